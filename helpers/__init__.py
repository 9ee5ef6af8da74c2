"""Everything the S7 notebook calls: data, models, receptive field, requirement checks, training, plots."""
