"""MLflow's UI in a real browser: `mlflow server` on a store, Debian's headless chromium driven by
selenium (dev extra), and the runs table as a user sees it.

`python -m src.bench ui-screenshots` runs a sweep on the embedded store into a temporary store
and saves the screenshots README shows (docs/mlflow-runs-table.png, docs/mlflow-best-run.png);
tests/test_mlflow_ui.py checks the same pages on a tiny sweep.

Only the Debian packages are used (`apt-get install chromium chromium-driver`): the driver is
given by path, so selenium never downloads a browser or a driver."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from src.servers import stop, wait_until_up
from src.tracking.ui_view import VIEW_KEY, runs_table_url

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = {"width": 1600, "height": 1000}
WAIT_SECONDS = 60
STARTUP_SECONDS = 180  # mlflow server on a 2-core machine shared with a test run: 10-25 s


def browser_missing() -> str | None:
    """Why the browser check cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium missing: pip install -e '.[dev]'"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def mlflow_server(store_uri: str, log: Path) -> Iterator[str]:
    """`mlflow server` on `store_uri` at a free local port, its output in `log`; yields its URL
    and stops it, workers and all (its own process group), on leaving. Job execution (GenAI
    judges) is off: the runs table does not need its worker processes."""
    port = free_port()
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server, STARTUP_SECONDS)
        yield url
    finally:
        stop(server)


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian chromium at WINDOW size through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI and this machine run as root, where chromium refuses its sandbox
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", WINDOW | {"deviceScaleFactor": 1, "mobile": False}
        )
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def close_assistant(driver: Any) -> None:
    """Close the MLflow Assistant panel MLflow opens on a browser's first visit (it covers a
    third of the table), as a user would."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(
        By.CSS_SELECTOR, '[data-component-id="mlflow.assistant.chat_panel.close"]'
    ):
        if button.is_displayed():  # clicked in the page: a first visit's tour may cover it
            driver.execute_script("arguments[0].click();", button)


def open_runs_table(driver: Any, server: str, experiment_id: str) -> None:
    """Open the experiment's runs table at the link README gives, wait for its rows."""
    driver.get(runs_table_url(server, experiment_id, view=False))
    wait_for(driver, ".ag-center-cols-container .ag-row")
    close_assistant(driver)


def choose_compare_view(driver: Any) -> None:
    """Pick "Compare runs" from the runs table's "Views" menu, as a user would."""
    wait_for(driver, '[data-testid="saved-views-trigger"]').click()
    wait_for(driver, f'[data-testid="saved-views-item-{VIEW_KEY}"]').click()
    wait_for(driver, ".ag-header-cell[col-id^='metrics.']")
    wait_for(driver, ".ag-center-cols-container .ag-row")


SCROLLER = ".ag-center-cols-viewport"


def _scan_columns(driver: Any, read: str) -> list:
    """Run the JS `read` (returns a list) at each horizontal scroll position of the table (the
    grid renders only the columns in view) and gather the results."""
    width, seen = driver.execute_script(
        f"const v = document.querySelector('{SCROLLER}'); return [v.scrollWidth, v.clientWidth];"
    )
    found: list = []
    for left in range(0, max(width, 1), max(seen // 2, 1)):
        driver.execute_script(f"document.querySelector('{SCROLLER}').scrollLeft = {left};")
        # The grid renders the columns scrolled into view on its next frames, not at once.
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "requestAnimationFrame(() => requestAnimationFrame(() => done()));"
        )
        found += driver.execute_script(read)
    driver.execute_script(f"document.querySelector('{SCROLLER}').scrollLeft = 0;")
    return found


def column_ids(driver: Any) -> list[str]:
    """The table's column ids (`metrics.\\`cluster/silhouette\\``, ...) left to right."""
    cells = _scan_columns(
        driver,
        "return [...document.querySelectorAll('.ag-header-cell[col-id]')].map("
        "c => [Number(c.getAttribute('aria-colindex')), c.getAttribute('col-id')]);",
    )
    return [col for _, col in sorted(set(map(tuple, cells)))]


def table_rows(driver: Any) -> list[dict[str, str]]:
    """Each row of the table as {column id: text shown (a link's, if the cell has one: a run
    name's cell also holds its colour picker)}, top to bottom; read again (up to WAIT_SECONDS)
    while some row lacks a column another row has (a scan that met the grid mid-render)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        rows = _read_rows(driver)
        columns = set().union(*rows)
        if all(set(row) == columns for row in rows) or time.monotonic() > deadline:
            return rows


def _read_rows(driver: Any) -> list[dict[str, str]]:
    cells = _scan_columns(
        driver,
        "return [...document.querySelectorAll('.ag-row[row-index] .ag-cell[col-id]')].map(c => "
        "[Number(c.closest('.ag-row').getAttribute('row-index')), c.getAttribute('col-id'), "
        "(c.querySelector('a') || c).innerText.trim()]);",
    )
    rows: dict[int, dict[str, str]] = {}
    for index, column, text in cells:
        rows.setdefault(index, {})[column] = text
    return [rows[i] for i in sorted(rows)]


# --------------------------------------------------------------------------------------------
# python -m src.bench ui-screenshots
# --------------------------------------------------------------------------------------------


def add_ui_screenshots(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder (docs/)")
    parser.add_argument("--trials", type=int, default=8, help="sweep trials (8)")


def run_ui_screenshots(args: argparse.Namespace) -> int:
    import mlflow
    from mlflow import MlflowClient

    reason = browser_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ui-screenshots-") as tmp:
        home = Path(tmp)
        store = f"sqlite:///{home}/mlflow.db"
        subprocess.run(
            [sys.executable, "-m", "src.sweep", f"hydra.run.dir={home}/out",
             f"sweep.n_trials={args.trials}", "sweep.study_name=spring-2026",
             "sweep.trial_plots=best"],
            cwd=home, env=os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": store},
            check=True,
        )  # fmt: skip
        mlflow.set_tracking_uri(store)
        experiment = mlflow.get_experiment_by_name("customer-segmentation").experiment_id
        (best,) = MlflowClient().search_runs([experiment], "tags.best = 'true'")
        with mlflow_server(store, home / "server.log") as server, chromium() as driver:
            from selenium.webdriver.common.by import By

            driver.get(runs_table_url(server, experiment))  # README's link, in the view
            wait_for(driver, ".ag-header-cell[col-id^='metrics.']")
            close_assistant(driver)
            driver.find_element(By.CSS_SELECTOR, "[aria-label='Toggle sidebar']").click()
            shot(driver, args.out / "mlflow-runs-table.png")  # the classifier columns in view
            driver.find_element(By.CSS_SELECTOR, "[aria-label='Toggle sidebar']").click()
            driver.get(
                f"{server}/#/experiments/{experiment}/runs/{best.info.run_id}"
                "?workflowType=machine_learning"
            )
            wait_for(driver, "[data-testid='run-details-page'], main")
            close_assistant(driver)
            shot(driver, args.out / "mlflow-best-run.png")
    return 0


def shot(driver: Any, path: Path) -> None:
    import time

    time.sleep(2)  # let charts and fonts settle: a screenshot is for people, not an assertion
    driver.save_screenshot(str(path))
    print(f"wrote {path}")
