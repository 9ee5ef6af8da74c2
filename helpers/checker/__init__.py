"""Does a network meet the S7 rules? One forward pass of any network is traced (trace, graph, trace_ops,
trace_layout), each tensor gets its window on the input (windows, positive_paths), which gives the receptive field
(receptive_field); the rules are read on that graph (rules) and reported as checks (spec)."""
