# Sourced by the other scripts: `ensure_debs package:command ...` installs,
# from Debian, each package whose command is missing, one at a time (so one
# that cannot install does not stop the others), then checks every command.
ensure_debs() {
  local entry pkg cmd missing=()
  for entry in "$@"; do
    cmd=${entry#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$entry")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  for entry in "${missing[@]}"; do
    pkg=${entry%%:*} cmd=${entry#*:}
    echo "==> installing $pkg (for $cmd)" >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" || echo "warning: installing $pkg failed" >&2
    command -v "$cmd" >/dev/null 2>&1 || { echo "error: $cmd is still missing after installing $pkg" >&2; return 2; }
  done
}
