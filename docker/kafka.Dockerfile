# Kafka (KRaft, one node) from the Maven Central jars Babelstream's local broker uses, for sites that
# cannot pull apache/kafka (compose.offline.yaml builds it; everyone else keeps apache/kafka).
#   babelstream kafka-libs --into docker/kafka-libs && docker build -f docker/kafka.Dockerfile .
# JRE_IMAGE: any Debian-like image with a Java 17+ runtime (bin/base-image makes one with debootstrap).
ARG JRE_IMAGE=eclipse-temurin:17-jre
FROM ${JRE_IMAGE}
RUN useradd --system --uid 10002 kafka && mkdir -p /var/lib/kafka/data && chown kafka /var/lib/kafka/data
COPY docker/kafka-libs /opt/kafka/libs
COPY streams/kafka/log4j.properties /opt/kafka/log4j.properties
COPY docker/kafka-start.sh /opt/kafka/start.sh
USER kafka
EXPOSE 9092 9093
CMD ["/opt/kafka/start.sh"]
