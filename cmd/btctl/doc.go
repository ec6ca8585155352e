// Command btctl is Blacktree's operator CLI.
//
//	btctl submit   publish a JobRequest to execute.queue (optionally --wait for its status)
//	btctl watch    show status.queue (non-destructive peek by default, --consume to take)
//	btctl logs -f  follow a job's output live from the hub's job events (logs.go)
//	btctl workers  list the hub's workers (AdminService.ListWorkers)
//	btctl jobs     list the hub's in-flight jobs (AdminService.ListJobs)
//	btctl drain    ask one worker to finish its jobs and take no new ones
//	               (--wait: until it is fenced and idle, drainwait.go)
//	btctl deny     end one worker's session and refuse its Register from now on
//
// Queue commands speak AMQP to RabbitMQ (--amqp-url); admin commands speak
// gRPC to one hub (--hub) with the admin token. Exit status: 0 success,
// 1 the job failed (or the hub refused the request), 2 usage error, 3
// infrastructure error (broker or hub unreachable, timeout, auth).
//
// Consuming status.queue is a decision with consequences, because
// status.queue belongs to the control plane and RabbitMQ queues cannot be
// read without taking messages: see usageWatch and usageSubmit (btctl
// submit --help, btctl watch --help) for how --wait and watch handle it.
package main
