#!/usr/bin/env bash
# Puts the Apache Kafka broker and Kafka's own tools (jars from Maven Central,
# listed in pom.xml beside this script) into one folder, the classpath that
# testkit's KafkaCluster runs them from, and prints that folder.
#
# The folder is keyed by the Kafka version and the pom's hash (a changed pom
# never reuses stale jars) and lies outside the repository:
# $SHMKAFKA_KAFKA_LIBS if set, else
# ${XDG_CACHE_HOME:-~/.cache}/shmkafka/kafka-VERSION-POMHASH/libs.
# Skipped when it is already complete. Needs java and mvn on PATH.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
pom_hash="$(sha256sum "$here/pom.xml" | cut -c1-12)"
libs="${SHMKAFKA_KAFKA_LIBS:-${XDG_CACHE_HOME:-$HOME/.cache}/shmkafka/kafka-$version-$pom_hash/libs}"
# The plugin version is pinned, so every machine copies the same way.
copy_dependencies="org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"

# A folder is complete once the marker is written, after every jar is in.
if [[ -f "$libs/.complete" ]]; then
    echo "$libs"
    exit 0
fi

for tool in java mvn; do
    if ! command -v "$tool" >/dev/null; then
        echo "fetch-kafka.sh: $tool is not installed (apt-get install openjdk-17-jre-headless maven)" >&2
        exit 1
    fi
done

# Copy into a fresh sibling folder, then rename: a concurrent or interrupted
# fetch never leaves a half-filled classpath behind.
mkdir -p "$(dirname "$libs")"
staging="$(mktemp -d "$(dirname "$libs")/libs.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
mvn -q -B -f "$here/pom.xml" "$copy_dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$staging" >&2
if [[ ! -f "$staging/kafka_2.13-$version.jar" || ! -f "$staging/kafka-tools-$version.jar" ]]; then
    echo "fetch-kafka.sh: Maven finished but the Kafka $version jars are missing in $staging" >&2
    exit 1
fi
touch "$staging/.complete"
if ! mv -T "$staging" "$libs" 2>/dev/null; then
    # Another fetch finished first; its folder is as good as ours.
    [[ -f "$libs/.complete" ]] || { echo "fetch-kafka.sh: cannot create $libs" >&2; exit 1; }
fi
trap - EXIT
rm -rf "$staging"
echo "$libs"
