package cspulse.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashSet;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Distinct active users per team per day (event time, one hour of grace), written the way
 * a Kafka Streams user would: event-time extractor, re-key by team, tumbling windowed
 * aggregate of a set of users, counts to an output topic. Prints "DONE <records> <ms>" once
 * it has read the number of usage records it is told to expect.
 *
 * args: bootstrap usage-topic output-topic application-id expected-records guarantee
 */
public final class DistinctUsers {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** A user set as newline-separated ids. */
  static final class UserSetSerde implements Serde<Set<String>> {
    @Override
    public Serializer<Set<String>> serializer() {
      return (topic, set) -> String.join("\n", set).getBytes(StandardCharsets.UTF_8);
    }

    @Override
    public Deserializer<Set<String>> deserializer() {
      return (topic, bytes) -> {
        Set<String> s = new HashSet<>();
        if (bytes != null && bytes.length > 0) {
          for (String u : new String(bytes, StandardCharsets.UTF_8).split("\n")) {
            s.add(u);
          }
        }
        return s;
      };
    }
  }

  /** Event time from the record's `occurred_at` (epoch ms). */
  public static final class OccurredAt implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      try {
        JsonNode n = JSON.readTree((String) record.value());
        return n.path("occurred_at").asLong(partitionTime);
      } catch (Exception e) {
        return partitionTime;
      }
    }
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0], usage = args[1], out = args[2], appId = args[3];
    long expected = Long.parseLong(args[4]);
    String guarantee = args.length > 5 ? args[5] : StreamsConfig.EXACTLY_ONCE_V2;
    AtomicLong seen = new AtomicLong();

    StreamsBuilder b = new StreamsBuilder();
    b.stream(usage, Consumed.with(Serdes.String(), Serdes.String()).withTimestampExtractor(new OccurredAt()))
        .peek((k, v) -> seen.incrementAndGet())
        .mapValues(v -> {
          try {
            return JSON.readTree(v);
          } catch (Exception e) {
            return null;
          }
        })
        .filter((k, n) -> n != null && !n.path("user_id").asText("").isEmpty())
        .map((k, n) -> KeyValue.pair(n.path("team_id").asText(), n.path("user_id").asText()))
        .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
        .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofDays(1), Duration.ofHours(1)))
        .aggregate(HashSet::new, (team, user, set) -> {
          set.add(user);
          return set;
        }, Materialized.with(Serdes.String(), new UserSetSerde()))
        .toStream()
        .map((w, set) -> KeyValue.pair(w.key() + "@" + w.window().start(), (long) set.size()))
        .to(out, Produced.with(Serdes.String(), Serdes.Long()));

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.STATE_DIR_CONFIG, System.getProperty("java.io.tmpdir") + "/kstreams-" + appId);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    KafkaStreams streams = new KafkaStreams(b.build(), p);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(10))));
    streams.start();
    while (seen.get() < expected) {
      Thread.sleep(50);
    }
    System.out.println("DONE " + seen.get() + " " + System.currentTimeMillis());
    System.out.flush();
    Thread.sleep(Long.MAX_VALUE);
  }
}
