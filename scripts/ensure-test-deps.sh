#!/bin/sh
# Install the system programs the tests need that pip cannot give, when they are missing.
#
#   prometheus, promtool  Debian package "prometheus"  (tests/integration/test_promtool.py)
#   initdb, pg_ctl        Debian package "postgresql"  (store tests against a real PostgreSQL)
#   munged, slurmctld, slurmd, sbatch, slurmrestd
#                         Debian packages "munge slurmctld slurmd slurm-client slurmrestd"
#                         (the Slurm tests; scripts/slurm-dev-cluster.sh starts the daemons)
#   chromium, chromedriver  Debian packages "chromium chromium-driver" (the HTML report is
#                         opened in real headless Chromium: tests/integration/test_report_browser.py)
#
# Idempotent and fast (< 1 s) when everything is present. As root with apt-get it installs what
# is missing with --no-install-recommends, running `apt-get update` only then; otherwise it
# prints what is missing and exits 0, and the tests that need it skip, saying why.
# Set CLIENTSWARM_NO_APT=1 to never install (report only).
set -eu

missing=""

have() { command -v "$1" >/dev/null 2>&1; }

# PostgreSQL's server programs live outside PATH on Debian (/usr/lib/postgresql/<v>/bin).
have_pg() {
    have initdb && have pg_ctl && return 0
    for bin in /usr/lib/postgresql/*/bin; do
        [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && return 0
    done
    return 1
}

{ have prometheus && have promtool; } || missing="$missing prometheus"
have_pg || missing="$missing postgresql"
{ have munged && have slurmctld && have slurmd && have sbatch && have slurmrestd; } ||
    missing="$missing munge slurmctld slurmd slurm-client slurmrestd"
{ have chromium && have chromedriver; } || missing="$missing chromium chromium-driver"

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ] || ! have apt-get || [ "${CLIENTSWARM_NO_APT:-0}" = 1 ]; then
    echo "ensure-test-deps: missing Debian packages:$missing" >&2
    echo "ensure-test-deps: install them (as root: apt-get install -y$missing);" \
        "the tests that need them are skipped meanwhile." >&2
    exit 0
fi

echo "ensure-test-deps: installing:$missing" >&2
# Packages must not start their daemons (a system Prometheus on :9090, a PostgreSQL cluster,
# munged/slurmctld/slurmd): the tests start their own. policy-rc.d exit 101 = "action forbidden".
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT INT TERM
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086  # word splitting of the package list is intended
if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
    echo "ensure-test-deps: apt-get could not install:$missing; the tests that need them" \
        "are skipped." >&2
fi
exit 0
