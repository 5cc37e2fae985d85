#!/bin/sh
# Runs libiscsi's conformance suite against an iSCSI target and prints the counts.
#   test/iscsi/conformance.sh iscsi://127.0.0.1:PORT/IQN/0 [log file]
# Counting (notes/iscsi.md): CUnit reports skipped tests as passed, so a test counts as
# passed only when its output shows neither SKIPPED nor FAILED; "failed" is CUnit's verdict;
# "skipped" printed SKIPPED; "noisy" passed by CUnit's verdict but printed [FAILED] lines
# (tests whose expected error paths print them).
set -eu
URL=$1
LOG=${2:-$(mktemp)}
I1=${I1:-iqn.2026-11.local.netboot:initiator:test1}
I2=${I2:-iqn.2026-11.local.netboot:initiator:test2}
# PARSE_ONLY=1 recounts an existing log instead of running the suite.
if [ -z "${PARSE_ONLY:-}" ]; then
  iscsi-test-cu --dataloss --test="${TESTS:-ALL}" "$URL" -i "$I1" -I "$I2" >"$LOG" 2>&1 || true
fi
awk '
  function verdict() {
    if (name == "") return
    if (failed) { nf++; fl = fl " " suite "." name }
    else if (skipped) { ns++; sl = sl " " suite "." name }
    else if (noisy) { nn++ }
    else { np++ }
  }
  /^Suite: / { verdict(); name = ""; suite = $2; next }
  /^  Test: / {
    verdict(); name = $2; failed = 0; skipped = 0; noisy = 0
  }
  name != "" && /SKIPPED/ { skipped = 1 }
  name != "" && /\[FAILED\]/ { noisy = 1 }
  name != "" && /(^|\.\.\.)FAILED$/ { failed = 1 }
  /^Run Summary/ { verdict(); name = "" }
  END {
    printf "passed %d failed %d skipped %d noisy %d\n", np, nf, ns, nn
    if (nf) printf "failed tests:%s\n", fl
    if (ENVIRON["SHOW_SKIPPED"] != "") printf "skipped tests:%s\n", sl
  }
' "$LOG"
