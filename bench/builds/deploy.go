package builds

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
)

// stopTimeout bounds a process's drain at the end of a scenario.
const stopTimeout = 30 * time.Second

// deployment is one hub with its workers, each worker on one engine, and
// a control plane on the hub's queues.
type deployment struct {
	s              *services
	name           string
	execQ, statusQ string
	hub            *cluster.Process
	workers        []*cluster.Process
	cp             *cluster.ControlPlane
	hosts          []string // each worker's engine, "" the machine's
}

// engines lists the DOCKER_HOST of each worker's engine.
func (d *deployment) engines() []string { return d.hosts }

// deploy starts a hub with hubFlags and one single-slot worker per engine
// (a DOCKER_HOST value; "" is the machine's engine), and waits until every
// worker has registered.
func (s *services) deploy(ctx context.Context, name string, hubFlags []string, engines []string) (*deployment, error) {
	id := randomHex(4)
	d := &deployment{
		s:       s,
		name:    name,
		execQ:   "bench.builds.execute." + id,
		statusQ: "bench.builds.status." + id,
		hosts:   engines,
	}
	grpcAddr, err := cluster.FreeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := cluster.FreeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--grpc-addr", grpcAddr,
		"--http-addr", httpAddr,
		"--amqp-url", s.cfg.AMQPURL,
		"--execute-queue", d.execQ,
		"--status-queue", d.statusQ,
		"--worker-tokens", s.tokensFile,
		"--admin-token-file", s.adminFile,
	}, hubFlags...)
	if d.hub, err = cluster.StartToFile("hub", s.bins.Hub, args, nil, d.logPath("hub")); err != nil {
		return nil, err
	}
	if err := cluster.WaitHTTP200(ctx, "http://"+httpAddr+"/readyz", d.hub); err != nil {
		d.close()
		return nil, err
	}
	if d.cp, err = cluster.NewControlPlane(s.cfg.AMQPURL, d.execQ, d.statusQ); err != nil {
		d.close()
		return nil, err
	}
	for i, engine := range engines {
		wname := fmt.Sprintf("%s-w%d", name, i+1)
		w, err := cluster.StartToFile("worker "+wname, s.bins.Worker, s.workerArgs(wname, grpcAddr), engineEnvOnly(engine), d.logPath(wname))
		if err != nil {
			d.close()
			return nil, err
		}
		d.workers = append(d.workers, w)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, w := range d.workers {
		if err := w.WaitOutput(wctx, "registered"); err != nil {
			d.close()
			return nil, err
		}
	}
	return d, nil
}

// engineEnvOnly is the DOCKER_HOST entry for a worker on host, if any.
func engineEnvOnly(host string) []string {
	if host == "" {
		return nil
	}
	return []string{"DOCKER_HOST=" + host}
}

func (d *deployment) logPath(process string) string {
	return filepath.Join(d.s.cfg.Dir, d.name+"-"+process+".log")
}

// workerArgs is a docker worker's command line.
func (s *services) workerArgs(name, hub string) []string {
	args := []string{
		"--hub", hub,
		"--insecure",
		"--token-file", s.workerTokenFile,
		"--name", name,
		"--state-dir", filepath.Join(s.cfg.Dir, "state-"+name),
		"--work-dir", s.cfg.Dir,
		"--executor", "docker",
		"--git-base-url", s.git.URL,
		"--registry", s.reg.Host,
		"--build-network", "none",
	}
	if s.cfg.Builder != "" {
		args = append(args, "--builder", s.cfg.Builder)
	}
	return append(args, s.cfg.WorkerArgs...)
}

// close stops the workers and the hub and deletes the queues.
func (d *deployment) close() {
	for _, w := range d.workers {
		_ = w.Stop(stopTimeout)
	}
	if d.hub != nil {
		_ = d.hub.Stop(stopTimeout)
	}
	if d.cp != nil {
		_ = d.cp.DeleteQueues(d.execQ, d.statusQ, d.execQ+".dead")
		_ = d.cp.Close()
	}
}

// job is a JobRequest building repo's Dockerfile as imageName.
func (d *deployment) job(repo, imageName string) *blacktreev1.JobRequest {
	return &blacktreev1.JobRequest{
		JobId:          d.name + "-" + randomHex(6),
		RepoUrl:        repo,
		Branch:         "main",
		DockerfilePath: "Dockerfile",
		ContextDir:     ".",
		ImageName:      imageName,
		GithubToken:    d.s.gitToken,
	}
}

// timed is one job's time to image and its response.
type timed struct {
	took time.Duration
	resp *blacktreev1.JobResponse
}

// buildAll publishes the jobs one after the other and waits for every
// response. Each job's time runs from its own publish to its response.
// A failed job fails the call.
func (d *deployment) buildAll(ctx context.Context, jobs []*blacktreev1.JobRequest) ([]timed, error) {
	out := make([]timed, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		start := time.Now()
		if err := d.cp.Publish(ctx, job); err != nil {
			wg.Wait()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := d.cp.WaitFor(ctx, job.GetJobId())
			if err != nil {
				errs[i] = fmt.Errorf("job %s: %w", job.GetJobId(), err)
				return
			}
			out[i] = timed{took: time.Since(start), resp: got[job.GetJobId()]}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, err
		}
		if r := out[i].resp; !r.GetSuccess() {
			return nil, fmt.Errorf("job %s on %s failed: %s", jobs[i].GetJobId(), jobs[i].GetRepoUrl(), r.GetError())
		}
	}
	return out, nil
}

// workerOf names the worker whose log mentions the job, "" if none does.
func (d *deployment) workerOf(jobID string) string {
	for _, w := range d.workers {
		if strings.Contains(w.Output(), jobID) {
			return strings.TrimPrefix(w.Name, "worker ")
		}
	}
	return ""
}
