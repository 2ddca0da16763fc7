#!/bin/bash
# Writes server.properties (the embedded broker's defaults, then one property per KAFKA_* variable),
# formats the storage on first start, then runs the broker in the foreground.
set -euo pipefail
CONFIG=/opt/kafka/config/server.properties
DATA=/var/lib/kafka/data
CP="/opt/kafka/libs/*"

declare -A props=()
order=()
set_prop() {
  [[ -v "props[$1]" ]] || order+=("$1")
  props[$1]=$2
}
while IFS= read -r line; do
  [[ -z "$line" || "$line" == \#* ]] && continue
  set_prop "${line%%=*}" "${line#*=}"
done < /opt/kafka/defaults/server.properties
set_prop log.dirs "$DATA"
set_prop listeners "PLAINTEXT://:9092,CONTROLLER://:9093"
set_prop advertised.listeners "PLAINTEXT://localhost:9092"
set_prop controller.quorum.bootstrap.servers "localhost:9093"

# KAFKA_FOO_BAR=x -> foo.bar=x; KAFKA_A__B -> a_b; KAFKA_A___B -> a-b (the apache/kafka convention).
while IFS='=' read -r -d '' name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_OPTS|KAFKA_VERSION) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  key=${key//@/_}
  set_prop "$key" "$value"
done < <(env -0)

# A static quorum (controller.quorum.voters) and a dynamic one (bootstrap servers) are exclusive.
standalone=(--standalone)
if [[ -n "${props[controller.quorum.voters]:-}" ]]; then
  unset 'props[controller.quorum.bootstrap.servers]'
  standalone=()
fi

: > "$CONFIG"
for key in "${order[@]}"; do
  [[ -v "props[$key]" ]] && printf '%s=%s\n' "$key" "${props[$key]}" >> "$CONFIG"
done

if [[ ! -f "$DATA/meta.properties" ]]; then
  cluster_id=${CLUSTER_ID:-$(java -cp "$CP" kafka.tools.StorageTool random-uuid)}
  java -cp "$CP" kafka.tools.StorageTool format "${standalone[@]}" -t "$cluster_id" -c "$CONFIG" > /dev/null
fi

# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS / KAFKA_OPTS hold several JVM flags
exec java ${KAFKA_HEAP_OPTS} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/defaults/log4j2.properties ${KAFKA_OPTS:-} \
  -cp "$CP" kafka.Kafka "$CONFIG"
