from tests.test_sandbox import run_code  # noqa
import time


def test_dbg(api, settings):
    settings.TAKO_POOL_ENABLED = False
    t = time.time()
    out = run_code(api, "print(1)", timeout=3, startup_timeout=10)
    print(out, time.time() - t)
