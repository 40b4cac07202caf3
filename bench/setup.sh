#!/usr/bin/env bash
# Installs the Debian packages the benchmark needs, only those that are
# missing (so a second run does not touch apt at all). Run as root; called by
# `npm run bench` (bench/run.ts) before anything else.
#
#   postfix         private MTA instance + smtp-source (SMTP load generator)
#   libmilter-dev   libmilter headers/library for the C null-milter baseline
#   gcc libc6-dev   to build it
#   util-linux      setpriv (filter sandbox)
#   bubblewrap      bwrap (filter sandbox)
#   mimedefang      the peer: MIMEDefang milter + multiplexor
#   libnet-dns-perl Net::DNS, a dependency Debian's mimedefang package misses
#   sudo            how MIMEDefang's unprivileged workers reach another uid
#   procps          ps, used for diagnostics
set -euo pipefail
packages=(postfix libmilter-dev gcc libc6-dev util-linux bubblewrap mimedefang libnet-dns-perl sudo procps)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "bench/setup.sh: all packages present (${packages[*]})"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/setup.sh: missing packages ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "bench/setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Postfix with "No configuration": no system instance; the bench runs its own.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
