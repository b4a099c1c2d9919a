#!/usr/bin/env bash
# A local Apache Kafka 4.x broker for development and tests: one combined KRaft broker and
# controller on 127.0.0.1, fetched through Maven into a git-ignored cache.
#
# It has two client listeners on loopback:
#   PLAINTEXT  127.0.0.1:KAFKA_PORT
#   SASL_SSL   127.0.0.1:KAFKA_SASL_PORT, SCRAM-SHA-512, with a certificate for 127.0.0.1 and
#              localhost signed by a CA made here (openssl), and one SCRAM user made with
#              Kafka's own storage tool. The password is random per `up`; `sasl-env` says it.
#
#   deploy/local/kafka.sh up        fetch (once), format storage, start, wait until both answer
#   deploy/local/kafka.sh down      stop it by its pid and remove its data
#   deploy/local/kafka.sh restart   stop and start it again, keeping its data
#   deploy/local/kafka.sh status    say whether it runs, and where
#   deploy/local/kafka.sh sasl-env  print the SASL_SSL listener's settings as shell exports:
#                                   CS_PULSE_TEST_SASL_BOOTSTRAP, _SASL_USERNAME,
#                                   _SASL_PASSWORD and CS_PULSE_TEST_CA (the CA's PEM file)
#
# Environment: KAFKA_PORT (default 19092), KAFKA_CONTROLLER_PORT (default KAFKA_PORT+1),
# KAFKA_SASL_PORT (default KAFKA_PORT+2), KAFKA_VERSION (default 4.1.1), CS_PULSE_CACHE
# (default <repo>/.cache), KAFKA_RESTART_PAUSE (seconds the broker stays down on restart;
# default 0).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${CS_PULSE_CACHE:-$repo/.cache}"
version="${KAFKA_VERSION:-4.1.1}"
port="${KAFKA_PORT:-19092}"
cport="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
sport="${KAFKA_SASL_PORT:-$((port + 2))}"
sasl_user="cs-pulse"
lib="$cache/kafka-$version/lib"
run="$cache/kafka-run-$port"
pidfile="$run/kafka.pid"
jvm=(-Xms256m -Xmx1g -XX:+UseG1GC -Dkafka.logs.dir="$run" -Dlog4j2.configurationFile="$run/log4j2.properties")

say() { echo "kafka.sh: $*" >&2; }

fetch() {
  [ -f "$lib/.complete" ] && return 0
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    say "Java 17+ and Maven are needed to fetch and run Apache Kafka $version here."
    say "Without them, use deploy/compose.yaml (the official apache/kafka image) or point"
    say "CS_PULSE_TEST_BOOTSTRAP / kafka.bootstrap_servers at an existing cluster."
    exit 3
  fi
  say "fetching Apache Kafka $version and its runtime dependencies through Maven (once)..."
  mkdir -p "$cache/kafka-$version"
  cat > "$cache/kafka-$version/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cs-pulse.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
  mvn -q -B -f "$cache/kafka-$version/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2
  touch "$lib/.complete"
}

# A CA, and a PKCS#12 key store holding the broker's key and its certificate (for IP
# 127.0.0.1 and DNS localhost) signed by that CA. Made once per `up`, in the run folder.
make_tls() {
  local d="$run/tls"
  mkdir -p "$d"
  command -v openssl >/dev/null || { say "openssl is needed to make the SASL_SSL listener's certificates"; exit 3; }
  store_pass="$(openssl rand -hex 16)"
  # chained with &&: inside `{ } ||`, set -e does not stop at a failing step
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cs-pulse local test CA" \
      -keyout "$d/ca.key" -out "$d/ca.pem" &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/broker.key" -out "$d/broker.csr" &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$d/broker.ext" &&
    openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
      -extfile "$d/broker.ext" -out "$d/broker.pem" &&
    openssl pkcs12 -export -in "$d/broker.pem" -inkey "$d/broker.key" -certfile "$d/ca.pem" \
      -name broker -passout "pass:$store_pass" -out "$d/broker.p12"
  } >"$d/openssl.log" 2>&1 || { say "making the certificates failed:"; cat "$d/openssl.log" >&2; exit 1; }
  chmod 600 "$d"/*.key "$d/broker.p12"
  openssl rand -hex 16 > "$run/sasl.password"
  chmod 600 "$run/sasl.password"
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

answers() {
  # A TCP connect is not enough: wait until the broker serves metadata.
  if command -v kcat >/dev/null; then
    kcat -b "127.0.0.1:$port" -L -m 3 >/dev/null 2>&1 && tls_answers
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && tls_answers
  fi
}

# The SASL_SSL listener completes a TLS handshake with the CA made here. (Debian's kcat
# cannot log in: its librdkafka 2.0.2 predates the SCRAM fix Kafka 4.x needs, 2.6.1.)
tls_answers() {
  openssl s_client -connect "127.0.0.1:$sport" -CAfile "$run/tls/ca.pem" -verify_return_error \
    </dev/null >/dev/null 2>&1
}

up() {
  if running; then
    say "already running (pid $(cat "$pidfile"))"
    echo "127.0.0.1:$port"
    return 0
  fi
  fetch
  rm -rf "$run"
  mkdir -p "$run/data"
  make_tls
  cat > "$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$run/tls/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$store_pass
listener.name.sasl_ssl.ssl.key.password=$store_pass
log.dirs=$run/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
PROPS
  cat > "$run/log4j2.properties" <<'LOG'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka.server.KafkaServer
logger.kafka.level = INFO
LOG
  java "${jvm[@]}" -cp "$lib/*" kafka.tools.StorageTool format \
    -t "cs-pulse-local-kraft-1" -c "$run/server.properties" --ignore-formatted \
    --add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$(cat "$run/sasl.password")]" >"$run/format.log" 2>&1 || {
    say "formatting storage failed:"; cat "$run/format.log" >&2; exit 1; }
  start
}

start() {
  nohup java "${jvm[@]}" -cp "$lib/*" kafka.Kafka "$run/server.properties" >>"$run/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if answers; then
      say "Apache Kafka $version is up (pid $(cat "$pidfile")); SASL_SSL on 127.0.0.1:$sport"
      echo "127.0.0.1:$port"
      return 0
    fi
    if ! running; then
      say "the broker exited while starting:"; tail -n 30 "$run/stdout.log" "$run/server.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.5
  done
  say "the broker did not answer on 127.0.0.1:$port and 127.0.0.1:$sport within 60 s"
  down
  exit 1
}

stop_pid() {
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  say "stopped (pid $pid)"
}

restart() {
  running || { say "not running"; exit 1; }
  stop_pid
  sleep "${KAFKA_RESTART_PAUSE:-0}"
  start
}

down() {
  if running; then
    stop_pid
  else
    say "not running"
  fi
  rm -rf "$run"
}

status() {
  if running; then
    echo "running: 127.0.0.1:$port (pid $(cat "$pidfile"))"
  else
    echo "not running"
    return 1
  fi
}

sasl_env() {
  running || { say "not running"; exit 1; }
  printf 'export %s=%q\n' \
    CS_PULSE_TEST_SASL_BOOTSTRAP "127.0.0.1:$sport" \
    CS_PULSE_TEST_SASL_USERNAME "$sasl_user" \
    CS_PULSE_TEST_SASL_PASSWORD "$(cat "$run/sasl.password")" \
    CS_PULSE_TEST_CA "$run/tls/ca.pem"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  restart) restart ;;
  status) status ;;
  sasl-env) sasl_env ;;
  *) echo "usage: $0 up|down|restart|status|sasl-env" >&2; exit 2 ;;
esac
