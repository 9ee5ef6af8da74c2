"""What students hand in, read as a grader reads it: a network from a .py file or a notebook (load: `load_entry`,
which `python -m helpers.check` and `helpers.train --net` share), the notebook's cells (notebook_cells) and the
code that builds its network (notebook_code), the accuracy it printed (claims), the device it ran on
(device_evidence), the parameter total it printed (printed_totals), shipped weights measured on the test images
(weights, normalization); one submission graded into one row (grade, rows), in a child process of its own (child,
batch)."""
