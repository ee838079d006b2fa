"""``python -m src.bench clv``: time the lifetime-value fits (``src.features.clv``).

1. Simulated summaries of 10k and 100k customers drawn from CDNOW's published parameters (days):
   MBG/NBD fit, Gamma-Gamma fit, and the three per-customer predictions; lifetimes' fitters on the
   same data when it is installed (dev extra), with the largest parameter disagreement.
2. The default synthetic store (``data.synthetic.customers``), loaded and cleaned as a run does:
   summary + both fits + predictions, the cost the run would pay.
"""

from __future__ import annotations

import argparse
import time

from src.features.clv import (
    GammaGamma,
    MbgNbd,
    customer_value,
    fit_gamma_gamma,
    fit_mbgnbd,
    rfm_summary,
    simulate_summary,
)

# MBG/NBD fitted on CDNOW in weeks (this fit and lifetimes' agree), alpha converted to days;
# Gamma-Gamma: Fader & Hardie (2013).
CDNOW_MBGNBD = MbgNbd(r=0.525, alpha=6.183 * 7, a=0.891, b=1.614, log_likelihood=0, n_customers=0)
CDNOW_GG = GammaGamma(p=6.25, q=3.74, v=15.44, log_likelihood=0, n_customers=0)
MAX_AGE_DAYS = 3 * 365  # the synthetic store's history


def add_clv(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--customers", type=int, nargs="+", default=[10_000, 100_000],
        help="simulated customers, one measurement per size (10,000 100,000)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)


def bench_clv(args: argparse.Namespace) -> int:
    for n in args.customers:
        _simulated(n, args.seed)
    _default_store()
    return 0


def _timed(func):
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def _simulated(n: int, seed: int) -> None:
    summary = simulate_summary(n, CDNOW_MBGNBD, CDNOW_GG, MAX_AGE_DAYS, seed)
    repeat = summary[summary["frequency"] > 0]
    print(f"clv: {n:,} simulated customers, {len(repeat):,} with repeat purchases")
    mbg_s, mbgnbd = _timed(lambda: fit_mbgnbd(summary))
    gg_s, gg = _timed(lambda: fit_gamma_gamma(summary))
    predict_s, _ = _timed(lambda: customer_value(summary, mbgnbd, gg))
    print(
        f"  scipy      MBG/NBD {mbg_s:6.2f} s  Gamma-Gamma {gg_s:6.2f} s  predict {predict_s:5.2f} s"
        f"  r={mbgnbd.r:.3f} alpha={mbgnbd.alpha:.2f} a={mbgnbd.a:.3f} b={mbgnbd.b:.3f}"
        f"  p={gg.p:.2f} q={gg.q:.2f} v={gg.v:.2f}"
    )
    try:
        import lifetimes
    except ImportError:
        print("  lifetimes  not installed: pip install -e '.[dev]' to compare (skipped)")
        return
    x, t_x, T = summary["frequency"], summary["recency"], summary["T"]
    mbg_s, theirs = _timed(lambda: lifetimes.ModifiedBetaGeoFitter().fit(x, t_x, T))
    gg_s, gg_theirs = _timed(
        lambda: lifetimes.GammaGammaFitter().fit(repeat["frequency"], repeat["monetary"])
    )
    gap = max(
        [abs(getattr(mbgnbd, k) / theirs.params_[k] - 1) for k in ("r", "alpha", "a", "b")]
        + [abs(getattr(gg, k) / gg_theirs.params_[k] - 1) for k in ("p", "q", "v")]
    )
    print(
        f"  lifetimes  MBG/NBD {mbg_s:6.2f} s  Gamma-Gamma {gg_s:6.2f} s"
        f"  largest relative parameter difference {gap:.1e}"
    )


def _default_store() -> None:
    from hydra import compose, initialize_config_dir

    from src.pipeline import prepare_data
    from src.tracking.pyfunc import SRC_DIR

    with initialize_config_dir(config_dir=str(SRC_DIR.parent / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["tracking=none"])
    start = time.perf_counter()
    data = prepare_data(cfg, with_figures=False)
    prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    summary = rfm_summary(data.transactions)
    summary_s = time.perf_counter() - start
    mbgnbd, gg = fit_mbgnbd(summary), fit_gamma_gamma(summary)
    customer_value(summary, mbgnbd, gg)
    total_s = time.perf_counter() - start
    print(
        f"clv: default synthetic store, {len(summary):,} customers "
        f"(load + clean + RFM took {prepare_s:.2f} s)"
    )
    print(
        f"  summary {summary_s:.2f} s, summary + fits + predictions {total_s:.2f} s"
        f"  r={mbgnbd.r:.3f} alpha={mbgnbd.alpha:.1f} a={mbgnbd.a:.3f} b={mbgnbd.b:.3f}"
        f"  p={gg.p:.2f} q={gg.q:.2f} v={gg.v:.0f}"
    )
