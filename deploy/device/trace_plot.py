"""A Fig. 4-like plot of a power trace (Cai et al., 2018, Fig. 4): power
over time, the threshold line, the working span shaded and labelled with
time and energy. matplotlib (Agg) is imported lazily; devices without it
get no PNG (``plot_trace`` returns False). Python 3.6 syntax."""

from typing import Any, Dict, Optional, Tuple


def plot_trace(path: str, trace: Any, span: Any, threshold_w: Optional[float],
               window: Tuple[float, float], result: Dict[str, Any]) -> bool:
  """Write the PNG to ``path``; returns False when matplotlib is missing."""
  try:
    # matplotlib: imported only when plotting.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  t0 = trace.t[0]
  fig, ax = plt.subplots(figsize=(8, 3.5))
  ax.plot(trace.t - t0, trace.p, lw=1.0, color="tab:blue", label="power")
  if threshold_w is not None:
    ax.axhline(threshold_w, color="tab:red", ls="--", lw=0.8,
               label="threshold %.3g W" % threshold_w)
  if span is not None:
    ax.axvspan(span[0] - t0, span[1] - t0, color="tab:orange", alpha=0.2,
               label="working span")
  ax.axvline(window[0] - t0, color="gray", lw=0.6, ls=":")
  ax.axvline(window[1] - t0, color="gray", lw=0.6, ls=":", label="host window")
  energy = result.get("energy_j")
  ax.set_title("%s / %s / %s: time %.3f s, energy %s" % (
      result.get("device"), result.get("runtime"), result.get("power_source"),
      result.get("time_s"), "n/a" if energy is None else "%.3f J" % energy))  # type: ignore[str-format]
  ax.set_xlabel("time (s)")
  ax.set_ylabel("power (W)")
  ax.legend(loc="upper right", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True
