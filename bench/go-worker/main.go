// A minimal Temporal Go SDK worker for bench/scale.ts: the same 10-step synthetic workflow as
// bench/workflows.ts (sequentialSteps, one activity per step), registered under the same names,
// so one client drives both on the same server and the TypeScript worker's figures have a
// reference. Not part of the project's runtime; built by the benchmark into its own cache.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

func step(_ context.Context, i int) (int, error) { return i, nil }

func sequentialSteps(ctx workflow.Context, n int) (int, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	sum := 0
	for i := 0; i < n; i++ {
		var r int
		if err := workflow.ExecuteActivity(ctx, "step", i).Get(ctx, &r); err != nil {
			return 0, err
		}
		sum += r
	}
	return sum, nil
}

func main() {
	address := flag.String("address", "127.0.0.1:7233", "Temporal frontend")
	namespace := flag.String("namespace", "default", "namespace")
	taskQueue := flag.String("task-queue", "bench-scale-go", "task queue")
	flag.Parse()
	c, err := client.Dial(client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		log.Fatalf("connect to %s: %v", *address, err)
	}
	defer c.Close()
	w := worker.New(c, *taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(sequentialSteps, workflow.RegisterOptions{Name: "sequentialSteps"})
	w.RegisterActivityWithOptions(step, activity.RegisterOptions{Name: "step"})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	if err := w.Start(); err != nil {
		log.Fatalf("start worker: %v", err)
	}
	os.Stdout.WriteString("ready\n")
	<-stop
	w.Stop()
}
