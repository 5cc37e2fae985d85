#!/bin/sh
# Runs libiscsi's conformance suite against an iSCSI target and prints the counts.
#   test/iscsi/conformance.sh iscsi://127.0.0.1:PORT/IQN/0 [log file]
# Counting: CUnit reports skipped tests as passed, so a test counts as
# passed only when its output shows neither SKIPPED nor FAILED; "failed" is CUnit's verdict;
# "skipped" printed SKIPPED; "noisy" passed by CUnit's verdict but printed [FAILED] lines
# (tests whose expected error paths print them).
# Output after a test's verdict is the suite's clean-up (it logs out and clears persistent
# reservations, which fails while a unit attention is pending, e.g. after a LU reset): it
# is not the test's, so it is counted apart as "cleanup-noise" and named with SHOW_SKIPPED.
set -eu
URL=$1
LOG=${2:-$(mktemp)}
I1=${I1:-iqn.2026-11.local.netboot:initiator:test1}
I2=${I2:-iqn.2026-11.local.netboot:initiator:test2}
# PARSE_ONLY=1 recounts an existing log instead of running the suite.
if [ -z "${PARSE_ONLY:-}" ]; then
  # The URL twice: two sessions (initiator names I1 and I2) to one LU, i.e. two paths, for
  # the MultipathIO suite (cross-path I/O, COMPARE AND WRITE races, LU reset seen on both).
  # SINGLE_PATH=1 gives one URL. --allow-sanitize: the target offers SANITIZE BLOCK ERASE on
  # thin disks; the run is destructive anyway (--dataloss) and gets a scratch disk.
  PATHS="$URL $URL"
  [ -n "${SINGLE_PATH:-}" ] && PATHS="$URL"
  # shellcheck disable=SC2086
  iscsi-test-cu --dataloss --allow-sanitize --test="${TESTS:-ALL}" $PATHS -i "$I1" -I "$I2" >"$LOG" 2>&1 || true
fi
awk '
  function verdict() {
    if (name == "") return
    if (failed) { nf++; fl = fl " " suite "." name }
    else if (skipped) { ns++; sl = sl " " suite "." name }
    else if (noisy) { nn++ }
    else { np++ }
    name = ""
  }
  # Text of a test (before its verdict) and of the clean-up after it.
  function scan(text, own) {
    if (own) {
      if (text ~ /SKIPPED/) skipped = 1
      if (text ~ /\[FAILED\]/) noisy = 1
    } else if (text ~ /\[FAILED\]/ && last != "") {
      nc++
      if (index(cl, " " last) == 0) cl = cl " " last
    }
  }
  /^Suite: / { verdict(); suite = $2; last = ""; next }
  /^Run Summary/ { verdict(); last = ""; next }
  /^  Test: / {
    verdict(); name = $2; failed = 0; skipped = 0; noisy = 0
    sub(/^  Test: [^ ]* \.\.\./, "")
  }
  {
    line = $0
    # CUnit prints the verdict after the test output ("passed" / "FAILED" at the start of a
    # line or right after "..."); anything after it on the line, and on later lines until
    # the next test, is clean-up.
    if (name != "" && match(line, /^(passed|FAILED)/)) {
      failed = (substr(line, 1, 6) == "FAILED")
      last = suite "." name
      verdict()
      scan(substr(line, RLENGTH + 1), 0)
      next
    }
    scan(line, name != "")
  }
  END {
    verdict()
    printf "passed %d failed %d skipped %d noisy %d cleanup-noise %d\n", np, nf, ns, nn, nc
    if (nf) printf "failed tests:%s\n", fl
    if (ENVIRON["SHOW_SKIPPED"] != "") {
      printf "skipped tests:%s\n", sl
      if (nc) printf "clean-up printed [FAILED] after:%s\n", cl
    }
  }
' "$LOG"
