"""The paper's experiments as runnable recipes: flags -> configs -> engine (minissl.train) ->
the paper-style table. One module each; run them from anywhere once minissl is installed:

    python -m minissl.experiments mnist_mlp --quick
    minissl-experiment mnist_lenet --help

(from the checkout, `python -m demos.<name>` runs the same). Importing this package loads
nothing and changes nothing; the entry points apply minissl.process.tune_for_training().
"""

EXPERIMENTS = {
    "mnist_mlp": "the MLP on MNIST, neuron-wise sparsity (section 4.1)",
    "mnist_lenet": "LeNet on MNIST, filter, channel and shape sparsity (Tables 1 and 2)",
    "cifar_convnet": "the ConvNet on CIFAR-10, row and column sparsity (Table 3)",
    "cifar_resnet": "ResNets on CIFAR-10, depth sparsity (Figure 6)",
    "sweep": "a lambda sweep of one experiment: the error-vs-FLOPs front",
}
