"""Notebooks written for the grading tests, in the styles students hand in: each cell is (source, printed text,
execution count). The networks are tiny, so that building and checking them takes a moment."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

# A network that meets every structural rule: 3 max-pools, a depthwise-separable pair, a dilated conv, GAP; 62 px.
NET = '''import torch
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self, width=8, norm_type="none"):
        super().__init__()
        self.c1 = nn.Conv2d(3, width, 3, padding=1)
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.pw = nn.Conv2d(width, 16, 1)
        self.c3 = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.c4 = nn.Conv2d(16, 16, 3, padding=1)
        self.c5 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.pw(self.dw(x))), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        x = F.relu(self.c5(F.relu(self.c4(x))))
        return self.fc(x.mean(dim=(2, 3)))
'''

# Breaks the rules: no pool, no dilation, no depthwise conv.
SMALL = '''class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))
'''

TRAINING = ("for epoch in range(2):\n    train(model, device, train_loader, optimizer, epoch)\n"
            "    test(model, test_loader)")
TEST_LOG = ("Test set: Average loss: 0.4512, Accuracy: 8012/10000 (80.12%)\n"
            "Test set: Average loss: 0.4011, Accuracy: 8512/10000 (85.12%)\n"
            "Test set: Average loss: 0.4102, Accuracy: 8433/10000 (84.33%)\n")


def cell(source: str, printed: str = "", count: int | None = None):
    outputs = [new_output("stream", name="stdout", text=printed)] if printed else []
    return new_code_cell(source, execution_count=count, outputs=outputs)


def write_notebook(path, *cells) -> str:
    """cells: code cells (cell(...)) or markdown strings; returns the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    made = [new_markdown_cell(one) if isinstance(one, str) else one for one in cells]
    nbformat.write(new_notebook(cells=made), str(path))
    return str(path)


def colab_notebook(path, printed: str = TEST_LOG) -> str:
    """The model in a cell, with Colab's shell lines, a drive mount, a config, and a trained model."""
    return write_notebook(
        path, "# S7 assignment",
        cell("!git clone https://example.invalid/s7.git\n%cd s7\n!pip install torchsummary\n"
             "from google.colab import drive\ndrive.mount('/content/drive')", "Cloning into 's7'...", 1),
        cell(NET, "", 2),
        cell("device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')\nprint('Using device:', device)\n"
             "config = {'width': 8, 'norm_type': 'BN'}\nmodel = Net(**config).to(device)\n"
             "optimizer = torch.optim.SGD(model.parameters(), lr=0.05)", "Using device: cuda\n", 3),
        cell(TRAINING, printed, 4))
