#!/usr/bin/env python3
"""Runs tests/deploy and ends with one `deploy: N passed, N failed` line; exit 1 on any failure.

  .venv/bin/python tests/deploy/run.py [-k PATTERN]   (CARACAL_BIN: the caracal binary)
"""
import sys
import time
import unittest

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import test_deploy  # noqa: E402


def main():
    started = time.monotonic()
    loader = unittest.TestLoader()
    if "-k" in sys.argv:
        loader.testNamePatterns = [f"*{sys.argv[sys.argv.index('-k') + 1]}*"]
    suite = loader.loadTestsFromModule(test_deploy)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    # A test with failing subtests counts once.
    owner = lambda case: getattr(case, "test_case", case).id()  # noqa: E731
    failed = len({owner(c) for c, _ in result.failures + result.errors} | {owner(c) for c in result.unexpectedSuccesses})
    skipped = len(result.skipped)
    passed = max(0, result.testsRun - failed - skipped)
    print(f"(deploy checks took {time.monotonic() - started:.0f} s)")
    if skipped:  # nothing here may skip: a skip is a failure
        print(f"deploy: {passed} passed, {failed + skipped} failed")
        return 1
    print(f"deploy: {passed} passed, {failed} failed")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
