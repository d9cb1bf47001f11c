package servicemap

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ReadKafka reads a topic from its first message to the last one it held
// when ReadKafka started (the Kafka output writes one event a message) and
// hands each message to m. It does not join a consumer group, so it commits
// nothing and disturbs no other consumer.
func (m *Map) ReadKafka(ctx context.Context, brokers []string, topic string) error {
	first, ends, err := offsetRange(ctx, brokers, topic)
	if err != nil {
		return err
	}
	start := map[int32]kgo.Offset{}
	for p, end := range ends {
		if end > first[p] {
			start[p] = kgo.NewOffset().At(first[p])
		}
	}
	if len(start) == 0 {
		return nil // an empty topic
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchMaxPartitionBytes(int32(max(m.limits.MaxLine, 1<<20))))
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	for len(start) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = fmt.Errorf("kafka: reading %s partition %d: %w", t, p, err)
		})
		if ferr != nil {
			return ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if _, open := start[r.Partition]; !open || r.Offset >= ends[r.Partition] {
				return
			}
			m.Add(r.Value)
			if r.Offset+1 >= ends[r.Partition] {
				delete(start, r.Partition)
			}
		})
	}
	return nil
}

// offsetRange asks the partitions' leaders for each partition's first
// offset still held and its next offset.
func offsetRange(ctx context.Context, brokers []string, topic string) (first, end map[int32]int64, err error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()

	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: metadata of %s: %w", topic, err)
	}
	if len(mresp.Topics) != 1 {
		return nil, nil, fmt.Errorf("kafka: metadata of %s: %d topics in the answer", topic, len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return nil, nil, fmt.Errorf("kafka: topic %s: %w", topic, err)
	}
	var partitions []int32
	for _, p := range mresp.Topics[0].Partitions {
		partitions = append(partitions, p.Partition)
	}
	if first, err = listOffsets(ctx, cl, topic, partitions, -2); err != nil {
		return nil, nil, err
	}
	end, err = listOffsets(ctx, cl, topic, partitions, -1)
	return first, end, err
}

// listOffsets asks for the earliest (at -2) or the next (at -1) offset of
// each partition.
func listOffsets(ctx context.Context, cl *kgo.Client, topic string, partitions []int32, at int64) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, at
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("kafka: offsets of %s: %w", topic, err)
	}
	offsets := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("kafka: offsets of %s partition %d: %w", topic, p.Partition, err)
			}
			offsets[p.Partition] = p.Offset
		}
	}
	return offsets, nil
}
