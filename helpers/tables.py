"""Fixed-width text tables: the one layout of every table the package prints (rule checks, receptive fields,
the convolution zoo)."""


def text_table(lines: list[list[str]], right_aligned: list[bool], rule: bool = False) -> list[str]:
    """Fixed-width columns, each left- or right-aligned as right_aligned says; `rule` draws dashes under the
    first line (the header). Every text table of the package is laid out here."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    if rule:
        lines = [lines[0], ["-" * width for width in widths], *lines[1:]]
    return ["  ".join(cell.rjust(width) if right else cell.ljust(width)
                      for cell, width, right in zip(line, widths, right_aligned)).rstrip() for line in lines]
