"""The sandbox's matplotlib backend (MPLBACKEND=module://tako_matplotlib, set by sitecustomize):
Agg, headless, and plt.show() saves each open figure as /output/figure-N.png (see tako.py), then
closes them, as closing a window would."""

import tako
from matplotlib.backend_bases import FigureManagerBase as FigureManager  # noqa: F401
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas  # noqa: F401


def show(*args, **kwargs):
    tako.save_open_figures(close=True)
