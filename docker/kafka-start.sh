#!/bin/bash
# Start a KRaft Kafka broker configured like the apache/kafka image: every KAFKA_<NAME> environment
# variable becomes the property <name> (lower case, "_" -> ".", "__" -> "_"); KAFKA_HEAP_OPTS, KAFKA_OPTS
# and KAFKA_CLUSTER_ID are not properties. Storage is formatted on first start.
set -euo pipefail
props=/tmp/server.properties
: > "$props"
for var in $(compgen -e); do
  case "$var" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_CLUSTER_ID|KAFKA_VERSION) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=$(printf '%s' "${var#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed 's/__/\x01/g; s/_/./g; s/\x01/_/g')
  printf '%s=%s\n' "$key" "${!var}" >> "$props"
done
grep -q '^log\.dirs=' "$props" || echo "log.dirs=/var/lib/kafka/data" >> "$props"
java=(java ${KAFKA_HEAP_OPTS:--Xmx1g} ${KAFKA_OPTS:-} -Dlog4j.configuration=file:/opt/kafka/log4j.properties
      -cp '/opt/kafka/libs/*')
logdir=$(sed -n 's/^log\.dirs=//p' "$props" | cut -d, -f1)
if [[ ! -f "$logdir/meta.properties" ]]; then  # a volume kept from before keeps its cluster
  cluster_id=${KAFKA_CLUSTER_ID:-$("${java[@]}" kafka.tools.StorageTool random-uuid)}
  "${java[@]}" kafka.tools.StorageTool format "--cluster-id=$cluster_id" "--config=$props"
fi
exec "${java[@]}" -XX:+UseSerialGC kafka.Kafka "$props"
