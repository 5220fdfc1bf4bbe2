"""Captum's Occlusion timed the way `cargo run --release -p benches --example occlusion_speed` times ours.

LeNet (Caffe's MNIST LeNet: conv 20 5x5, pool, conv 50 5x5, pool, ip 500, ReLU, ip 10) on one
1x28x28 input, window 6, stride 2: 144 windows; ResNet-20 (akamaster's CIFAR-10 ResNet-20, option-A
shortcuts, the bundled pre-trained weights) on one 3x32x32 input, window 8, stride 2: 169 windows.
`perturbations_per_eval` 64 and 1; each timed call includes Captum's forward of the unoccluded
input, as ours does. Prints windows per second, the median of the repeats.
"""

import argparse
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import Occlusion


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.ip1 = nn.Linear(800, 500)
        self.ip2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        return self.ip2(F.relu(self.ip1(x.flatten(1))))


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for s in [stride, 1, 1]:
                blocks.append(BasicBlock(in_planes, planes, s))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).flatten(1)
        return self.linear(out)


def time_occlusion(name, model, x, window, repeats):
    model.eval()
    channels = x.shape[1]
    occlusion = Occlusion(model)
    windows = ((x.shape[2] - window) // 2 + 1) * ((x.shape[3] - window) // 2 + 1)
    with torch.no_grad():
        target = int(model(x).argmax(1))
        for ppe in (64, 1):
            run = lambda: occlusion.attribute(
                x,
                sliding_window_shapes=(channels, window, window),
                strides=(channels, 2, 2),
                target=target,
                baselines=0,
                perturbations_per_eval=ppe,
            )
            run()  # warm-up
            rates = []
            for _ in range(repeats):
                started = time.perf_counter()
                run()
                rates.append(windows / (time.perf_counter() - started))
            print(
                f"captum {name} ppe{ppe}: windows={windows} "
                f"windows_per_second={statistics.median(rates):.0f} "
                f"(runs: {', '.join(f'{r:.0f}' for r in rates)})",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--weights", default="datasets/weights/resnet20-12fca82f.th")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}",
        flush=True,
    )
    time_occlusion("lenet", LeNet(), torch.randn(1, 1, 28, 28), 6, args.repeats)
    resnet = ResNet20()
    if os.path.exists(args.weights):
        state = torch.load(args.weights, map_location="cpu")["state_dict"]
        resnet.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
        print(f"ResNet-20 weights: {args.weights}", flush=True)
    time_occlusion("resnet20", resnet, torch.randn(1, 3, 32, 32), 8, args.repeats)


if __name__ == "__main__":
    main()
