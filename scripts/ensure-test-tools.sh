#!/usr/bin/env bash
# Installs the real clients, browser and peer MTA the tests drive (swaks, curl, chromium,
# postfix: also smtp-sink for bench/outbound_bench.py; Perl's Mail::DKIM with Net::DNS, the
# independent DKIM verifier of tests/senders) when missing.
# With CI=true a tool that cannot be had fails the run; elsewhere its tests are skipped.
set -u
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/postfix ] || need+=(postfix)
perl -MMail::DKIM::Verifier -MNet::DNS -e 1 >/dev/null 2>&1 || need+=(libmail-dkim-perl libnet-dns-perl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} from Debian" >&2
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1
  else
    echo "not root: cannot install ${need[*]}; their tests will be skipped" >&2
  fi
fi
missing=()
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/postfix ] || missing+=(postfix)
perl -MMail::DKIM::Verifier -MNet::DNS -e 1 >/dev/null 2>&1 || missing+=(libmail-dkim-perl)
if [ ${#missing[@]} -gt 0 ] && [ "${CI:-}" = "true" ]; then
  echo "CI=true and missing: ${missing[*]}" >&2
  exit 1
fi
exit 0
