"""What the notebook shows beyond training: the convolution zoo and its costs (zoo, lecture_points), the effective
receptive field (erf, erf_figures, probes), where a network looked (gradcam), figures (plots), sentences computed
from outputs (readings, describe), and the committed benchmark records (records)."""
