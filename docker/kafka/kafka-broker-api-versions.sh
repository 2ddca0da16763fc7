#!/bin/bash
# The healthcheck: `kafka-broker-api-versions.sh --bootstrap-server HOST:PORT` sends one ApiVersions
# request (v0) over plain TCP and exits 0 only when the broker answers it without an error code. The
# same command works in apache/kafka, whose script of this name asks the same question with the Java tools.
set -euo pipefail
server=localhost:9092
while (($#)); do
  case "$1" in
    --bootstrap-server) server=${2%%,*}; shift 2 ;;
    *) shift ;;
  esac
done
host=${server%:*}
port=${server##*:}
exec 3<>"/dev/tcp/$host/$port"
# size=10 | api_key=18 (ApiVersions) | api_version=0 | correlation_id=1 | client_id=null
printf '\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff' >&3
# response: size (4 bytes) | correlation_id (4) | error_code (2)
reply=$(timeout 10 head -c 10 <&3 | od -An -v -tx1 | tr -d ' \n')
exec 3>&-
[[ ${#reply} -eq 20 && ${reply:8:8} == 00000001 && ${reply:16:4} == 0000 ]] || {
  echo "no ApiVersions answer from $server (got '${reply}')" >&2
  exit 1
}
echo "$server answers ApiVersions"
