"""Did the notebook's run use a GPU? Its outputs say so or not; its code only says what it meant to do.

GPU: a device printed as cuda ("cuda:0", "device(type='cuda')", "Using device: cuda"), a GPU's name ("Tesla T4",
"NVIDIA A100"), nvidia-smi's table, "CUDA available: True". CPU: a device printed as cpu, "CUDA available: False".
Printed text is read with regular expressions; code is read with `ast`: a "cuda" string, `.cuda()` or
`torch.cuda.is_available()` is intent, quoted beside the outputs' evidence and never deciding.
"""
import ast
import re
from dataclasses import dataclass

from .notebook_cells import Cell, printed_lines

GPU = "gpu"
CPU = "cpu"
SAID_BY_PIP = re.compile(r"requirement already|collecting|downloading|installing|\.whl|nvidia-\w+-cu\d", re.I)
SIGNS = [
    (GPU, re.compile(r"device\(type='cuda'|^\s*cuda(?::\d+)?\s*$|\b(?:device|using|running on|trained on|training on)"
                     r"\b[^\n]{0,30}\bcuda\b|\b(?:Tesla|NVIDIA|GeForce|Quadro)\s+[A-Z]*\s?\d+\w*|NVIDIA-SMI|"
                     r"\b(?:cuda|gpu)\b[^\n]{0,20}\bavailable\b\W{0,4}\s*true\b", re.IGNORECASE)),
    (CPU, re.compile(r"device\(type='cpu'|^\s*cpu\s*$|\b(?:device|using|running on|trained on|training on)\b"
                     r"[^\n]{0,30}\bcpu\b|\b(?:cuda|gpu)\b[^\n]{0,20}\bavailable\b\W{0,4}\s*false\b|no gpu",
                     re.IGNORECASE)),
]


@dataclass(frozen=True)
class DeviceEvidence:
    used: str | None           # GPU, CPU, or None when the outputs show neither
    quotes: list[str]          # 'cell 3 [4]: "Using device: cuda"', the outputs first, then intent in code

    @property
    def text(self) -> str:
        return "; ".join(self.quotes) or "nothing printed shows the device, and no code names cuda"


def device_evidence(cells: list[Cell]) -> DeviceEvidence:
    """GPU when some output shows a GPU in use, else CPU when one shows the CPU, else None; with the first quote of
    each kind found, and the first line of code that asks for CUDA."""
    seen = {}
    for cell in cells:
        for line in printed_lines(cell.output_text):
            if SAID_BY_PIP.search(line):
                continue
            for used, pattern in SIGNS:
                if used not in seen and pattern.search(line):
                    seen[used] = f'{cell.label}: "{line[:120]}"'
    used = GPU if GPU in seen else CPU if CPU in seen else None
    quotes = [seen[kind] for kind in (GPU, CPU) if kind in seen]
    intent = _intent(cells)
    return DeviceEvidence(used, quotes + ([f"intent, not use: {intent}"] if intent else []))


def _intent(cells: list[Cell]) -> str | None:
    """The first statement whose code asks for CUDA, quoted with its cell."""
    for cell in cells:
        try:
            module = ast.parse(cell.source)
        except SyntaxError:
            continue
        for statement in module.body:
            if any(_asks_for_cuda(node) for node in ast.walk(statement)):
                return f"{cell.label}: {ast.get_source_segment(cell.source, statement).splitlines()[0][:120]}"
    return None


def _asks_for_cuda(node) -> bool:
    return ((isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("cuda"))
            or (isinstance(node, ast.Attribute) and node.attr == "cuda"))
