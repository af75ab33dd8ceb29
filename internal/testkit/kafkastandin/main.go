// Command kafkastandin stands in for a Kafka cluster and its topic tool
// where scripts/deploy-check.sh runs docs/deploy.md's commands on
// loopback: there is no Kafka on the test machines.
//
//	kafkastandin -host 127.0.77.4 -ports 9092,9093,9094
//
// runs kfake (the Kafka protocol in process, in memory) with one broker per
// port on host, without topics (a push topic must be created, as on a real
// cluster), until SIGINT or SIGTERM. Invoked under the name
// kafka-topics.sh (a link), it does the part of Kafka's own tool the guide
// uses, with the same flags:
//
//	kafka-topics.sh --bootstrap-server B --create --topic T --partitions P --replication-factor R [--config k=v]...
//	kafka-topics.sh --bootstrap-server B --describe --topic T
//
// The broker checks what a real one checks here (a replication factor
// above the broker count, a topic that exists); the configs are passed on
// as given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	var err error
	if filepath.Base(os.Args[0]) == "kafka-topics.sh" {
		err = topics(os.Args[1:])
	} else {
		err = serve(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, filepath.Base(os.Args[0])+":", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("kafkastandin", flag.ContinueOnError)
	host := fs.String("host", "127.0.0.1", "address the brokers listen on")
	ports := fs.String("ports", "9092", "one broker per port, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ps []int
	for _, p := range strings.Split(*ports, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("-ports: %q is not a port", p)
		}
		ps = append(ps, n)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	c, err := kfake.NewCluster(
		kfake.NumBrokers(len(ps)),
		kfake.Ports(ps...),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(*host, port))
		}),
	)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "kafkastandin: brokers", strings.Join(c.ListenAddrs(), ","))
	<-sigs
	c.Close()
	return nil
}

// configs is a repeatable --config k=v flag.
type configs map[string]string

func (c configs) String() string { return fmt.Sprint(map[string]string(c)) }

func (c configs) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	c[k] = val
	return nil
}

func topics(args []string) error {
	fs := flag.NewFlagSet("kafka-topics.sh", flag.ContinueOnError)
	bootstrap := fs.String("bootstrap-server", "", "brokers, comma-separated host:port")
	create := fs.Bool("create", false, "create the topic")
	describe := fs.Bool("describe", false, "describe the topic")
	topic := fs.String("topic", "", "topic name")
	partitions := fs.Int("partitions", -1, "partitions (-1: the broker's default)")
	replication := fs.Int("replication-factor", -1, "replicas (-1: the broker's default)")
	cfgs := configs{}
	fs.Var(cfgs, "config", "topic config key=value (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bootstrap == "" || *topic == "" || *create == *describe {
		return errors.New("need --bootstrap-server, --topic and one of --create, --describe")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*bootstrap, ",")...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if *create {
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = *topic, int32(*partitions), int16(*replication)
		for k, v := range cfgs {
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = k, kmsg.StringPtr(v)
			rt.Configs = append(rt.Configs, c)
		}
		req.Topics = append(req.Topics, rt)
		req.TimeoutMillis = 10000
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
				return fmt.Errorf("create %s: %w", t.Topic, err)
			}
		}
		fmt.Fprintf(os.Stdout, "Created topic %s.\n", *topic)
		return nil
	}
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(*topic)
	req.Topics = append(req.Topics, mt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return fmt.Errorf("describe %s: %w", *topic, err)
		}
		rf := 0
		if len(t.Partitions) > 0 {
			rf = len(t.Partitions[0].Replicas)
		}
		fmt.Fprintf(os.Stdout, "Topic: %s\tPartitionCount: %d\tReplicationFactor: %d\n", *topic, len(t.Partitions), rf)
		slices.SortFunc(t.Partitions, func(a, b kmsg.MetadataResponseTopicPartition) int { return int(a.Partition - b.Partition) })
		for _, p := range t.Partitions {
			fmt.Fprintf(os.Stdout, "\tTopic: %s\tPartition: %d\tLeader: %d\tReplicas: %v\tIsr: %v\n", *topic, p.Partition, p.Leader, p.Replicas, p.ISR)
		}
	}
	return nil
}
