"""The machinery under a run that a student may skip: which device and how many threads (device), the arithmetic
a run trains in (precision), several processes under torchrun (distributed), and the run's folder on disk (runs)."""
