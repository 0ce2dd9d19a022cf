"""Learning curves of a run directory: loss and accuracy against epochs, PNG and PDF."""

from __future__ import annotations

import io
import os
from pathlib import Path

from sdcomplex._io import atomic_write_bytes, read_json_object
from sdcomplex.train._metrics import read_metrics


def plot_learning_curves(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 200,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Draws train/test loss and accuracy per epoch of a run and saves a PNG and a PDF.

    Left panel: cross-entropy (train and test in inference mode, and the mean training
    objective over each epoch's mini-batches; log scale when it spans more than a factor 20);
    right panel: accuracy. The title names the
    model, data set and training set size from the run's ``config.json`` / ``run.json``.

    Args:
        run_dir: a run directory with ``metrics.jsonl``.
        out: output path; its suffix is replaced by ``.png`` and ``.pdf`` (default
            ``run_dir/learning_curves``).
        dpi: PNG resolution (>= 150).
        overwrite: replace existing files (otherwise an existing file is an error).

    Returns:
        ``(png_path, pdf_path)``, both written atomically.

    Raises:
        ValueError: no metrics in ``run_dir``, a damaged ``config.json`` or ``run.json`` (the
            message names it), or ``dpi < 150``.
        FileExistsError: an output file exists and ``overwrite`` is False.

    Example:
        >>> plot_learning_curves("/tmp/runs/mlp_digits")  # doctest: +SKIP
        (PosixPath('/tmp/runs/mlp_digits/learning_curves.png'), PosixPath('...pdf'))
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if dpi < 150:
        raise ValueError(f"dpi must be >= 150, got {dpi}")
    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"run directory {run} does not exist")
    records = read_metrics(run)
    if not records:
        raise ValueError(f"{run / 'metrics.jsonl'} has no epochs yet")
    base = Path(out) if out is not None else run / "learning_curves"
    png, pdf = base.with_suffix(".png"), base.with_suffix(".pdf")
    for path in (png, pdf):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")

    title = run.name
    cfg_file, run_file = run / "config.json", run / "run.json"
    if cfg_file.is_file():
        cfg = read_json_object(cfg_file, "run config")
        title = f"{cfg.get('model')} on {cfg.get('dataset')}"
        if run_file.is_file():
            info = read_json_object(run_file, "run record").get("dataset")
            if not isinstance(info, dict):
                raise ValueError(f"run record {run_file} has no data set description")
            title += f" ({info.get('n_train')} training / {info.get('n_test')} test examples)"

    epochs = [r["epoch"] for r in records]

    def series(key: str) -> tuple[list[int], list[float]]:
        pairs = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric, label in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(*series(f"train_{metric}"), "o-", color="tab:blue", ms=3, label="train")
        ax.plot(*series(f"test_{metric}"), "s-", color="tab:red", ms=3, label="test")
        xs, ys = series(f"batch_{metric}")
        if xs:
            ax.plot(xs, ys, "--", color="tab:gray", label="train (mini-batches, training mode)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_xlim(min(epochs), max(max(epochs), 1))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    losses = [r.get(k) for r in records for k in ("train_loss", "test_loss", "batch_loss")]
    positive = [v for v in losses if isinstance(v, int | float) and v > 0]
    if positive and max(positive) / min(positive) > 20:  # e.g. BatchNorm nets at epoch 0
        ax_loss.set_yscale("log")
    ax_acc.set_ylim(0, 1)
    fig.suptitle(title)
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=dpi)
        atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)
    plt.close(fig)
    return png, pdf
