"""minissl.atomic: a file is written whole or not at all, with the permissions open() gives."""

import os
import stat

import pytest

from minissl import atomic, compact, models, serialize
from minissl.compact.plan import CompactionPlan
from minissl.train import records


def listing(folder):
    return sorted(os.listdir(folder))


def test_a_finished_write_replaces_the_file_with_open_s_permissions(tmp_path):
    target = tmp_path / "deep" / "out.txt"  # the folder is made
    with atomic.atomic_file(target) as file:
        file.write("first")
    with atomic.atomic_file(target) as file:
        file.write("second")
    assert target.read_text() == "second"
    reference = tmp_path / "reference.txt"
    reference.write_text("made by open()")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert stat.S_IMODE(target.stat().st_mode) == atomic.file_mode()
    assert listing(target.parent) == ["out.txt"]


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, failure):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(failure):
        with atomic.atomic_file(target, "wb") as file:
            file.write(b"half of the new")
            raise failure()
    assert target.read_bytes() == b"old"
    assert listing(tmp_path) == ["model.bin"]


def test_a_mode_other_than_write_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic.atomic_file(tmp_path / "x", "a"):
            pass


def test_every_writer_leaves_only_its_file(tmp_path):
    """records, serialize and the compaction plan write through atomic_file: no temporary
    file is left beside what they wrote, and a failure while serializing leaves nothing."""
    records.write_text(tmp_path / "a.txt", "text")
    model = models.mlp(seed=0)
    serialize.save(model, tmp_path / "m.npz")
    plan = compact.plan_compaction(model, (784,))
    plan.save_json(tmp_path / "plan.json")
    assert CompactionPlan.load_json(tmp_path / "plan.json") == plan
    assert listing(tmp_path) == ["a.txt", "m.npz", "plan.json"]
    with pytest.raises(serialize.ModelFileError):
        serialize.save(model, tmp_path / "n.npz", metadata={"bad": object()})
    assert listing(tmp_path) == ["a.txt", "m.npz", "plan.json"]
