"""A ResNet-20 written and exported by PyTorch's standard ONNX exporter loads into minissl
and reproduces PyTorch's outputs on CIFAR-10 test images; then it takes SSL's depth groups,
compacts and exports again. A one-off check of minissl.onnx.load against another framework
(the tests use a graph built with onnx.helper instead, so that CI needs no PyTorch).

    pip install torch==2.13.0      # the CPU build on these machines' disk
    MINISSL_DATA=../shared/datasets python scripts/check_onnx_from_pytorch.py
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import minissl  # noqa: E402
from benchmarks.train_throughput import _torch_resnet20  # noqa: E402
from minissl import Tensor, cifar, compact, no_grad  # noqa: E402


def main():
    torch.manual_seed(0)
    model = _torch_resnet20()
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():  # running statistics as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    model.eval()
    images = cifar.cifar10(None).test_images[:500].astype(np.float32) / 255
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet20_torch.onnx"
        torch.onnx.export(model, torch.from_numpy(images[:2]), str(path), dynamo=False,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=17)
        ops = sorted({node.op_type for node in __import__("onnx").load(str(path)).graph.node})
        loaded = minissl.onnx.load(path)
        with no_grad():
            got = loaded(Tensor(images)).data
        difference = float(np.abs(got - expected).max())
        same = int((got.argmax(1) == expected.argmax(1)).sum())
        print(f"torch {torch.__version__}: the exported graph's operators: {', '.join(ops)}")
        print(f"minissl loaded {sum(1 for _ in loaded.named_modules())} modules; on "
              f"{len(images)} CIFAR-10 test images the largest difference from PyTorch's "
              f"logits is {difference:.2e}, the same class on {same} of {len(images)}")
        blocks = [module for module in loaded if type(module).__name__ == "BasicBlock"]
        for block in blocks[1:3]:  # what SSL's depth groups would zero
            for parameter in block.branch.parameters():
                parameter.data[...] = 0
        small, plan = compact.compact(loaded, (3, 32, 32))
        again = minissl.onnx.export(small, Path(folder) / "resnet_ssl.onnx", (3, 32, 32))
        import onnxruntime

        session = onnxruntime.InferenceSession(str(again), providers=["CPUExecutionProvider"])
        with no_grad():
            mine = loaded(Tensor(images)).data
        theirs = session.run(None, {"input": images})[0]
        print(f"two branches zeroed, compacted ({len(plan.removed_blocks)} blocks removed) and "
              f"exported again: onnxruntime's largest difference from minissl's sparse model "
              f"{float(np.abs(theirs - mine).max()):.2e}")
    if difference > 1e-4 or same != len(images):
        sys.exit("error: minissl's outputs differ from PyTorch's")


if __name__ == "__main__":
    main()
