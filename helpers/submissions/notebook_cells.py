"""A notebook's code cells as a grader reads them: in the order they ran, each with the text it printed.

Cells that ran carry execution counts; that order is the one their outputs come from, whatever their place in the
file. Cells that never ran keep their place after those that did. Colab's shell and magic lines (`!git clone`,
`%cd`) are turned into Python by IPython's own transformer, so that `ast` can read every cell."""
from dataclasses import dataclass
from pathlib import Path


class NotebookError(Exception):
    """The file is not a notebook nbformat can read (not JSON, truncated, another kind of file)."""


@dataclass(frozen=True)
class Cell:
    number: int            # its place in the file, from 1: what a grader scrolls to
    execution_count: int | None
    source: str            # Python: shell and magic lines are get_ipython() calls
    output_text: str       # what it printed: streams, results and errors, as text

    @property
    def label(self) -> str:
        return f"cell {self.number}" + (f" [{self.execution_count}]" if self.execution_count else "")


def read_cells(path: Path) -> list[Cell]:
    """The code cells of the notebook at `path` in the order they ran; NotebookError when it cannot be read."""
    import nbformat  # installed with jupyter; only notebooks need it
    try:
        notebook = nbformat.read(str(path), as_version=4)
    except Exception as error:  # nbformat raises JSON, validation and OS errors of many kinds
        raise NotebookError(f"{path} is not a notebook that can be read: {type(error).__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''}") from None
    cells = [Cell(number, cell.get("execution_count"), _python(cell.source), _output_text(cell.get("outputs", [])))
             for number, cell in enumerate(notebook.cells, 1) if cell.cell_type == "code"]
    ran = sorted((cell for cell in cells if cell.execution_count), key=lambda cell: cell.execution_count)
    return ran + [cell for cell in cells if not cell.execution_count]


def _python(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # a cell IPython cannot read either: ast reports it, with its line
        return source


def _output_text(outputs) -> str:
    """Each output's text, tqdm's carriage returns kept (claims reads the bar's last state)."""
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
        elif output.get("output_type") == "error":
            parts.append(f"{output.get('ename', '')}: {output.get('evalue', '')}")
    return "\n".join(part if isinstance(part, str) else "".join(part) for part in parts)


def printed_lines(text: str):
    """Each line as it was left on the screen: the last state of a line a progress bar rewrote with "\\r"."""
    for line in text.split("\n"):
        shown = [part.strip() for part in line.split("\r") if part.strip()]
        if shown:
            yield shown[-1]
