#!/usr/bin/env bash
# Installs wrk (Debian/Ubuntu apt) when it is missing. wrk is the benchmark's default load generator
# whenever it is on PATH (bench/run.ts falls back to autocannon without it), and test/bench-harness.test.ts
# runs it against a local server (skipped without wrk), so .ci/run calls this before `npm test`. Quiet when
# wrk is already on PATH. Safe to run or to source.
ensure_wrk() {
  if command -v wrk >/dev/null 2>&1; then
    return 0
  fi
  local sudo=''
  if [ "$(id -u)" -ne 0 ]; then sudo='sudo'; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
  echo "wrk: installed $(command -v wrk)"
}
ensure_wrk
