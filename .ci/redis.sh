#!/usr/bin/env bash
# Installs redis-server (Debian/Ubuntu apt) when it is missing: the Redis store tests start their own
# redis-server from PATH, and fail on CI rather than skip without it. Safe to run or to source.
ensure_redis_server() {
  if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server: $(redis-server --version)"
    return 0
  fi
  local sudo=''
  if [ "$(id -u)" -ne 0 ]; then sudo='sudo'; fi
  # Non-interactive: no prompts on a CI runner. The package's system service (on 6379, where systemd runs
  # it) is not used; the tests pick free ports.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  echo "redis-server: $(redis-server --version)"
}
ensure_redis_server
