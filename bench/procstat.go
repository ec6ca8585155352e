package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports (the kernel ABI fixes it).
const clockTicks = 100

// RSS returns a process's resident set size (VmRSS) in bytes.
func RSS(pid int) (int64, error) {
	f, err := os.Open(procPath(pid, "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest) // "12345 kB"
			if len(fields) < 1 {
				break
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("VmRSS not found for pid %d", pid)
}

// CPUTime returns a process's user+system CPU time so far.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU extracts utime+stime from a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may contain spaces, so
// fields are counted after the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line")
	}
	fields := strings.Fields(stat[i+1:])
	// After ')': field 3 (state) is fields[0]; utime is field 14, stime 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("short stat line")
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime/stime in stat line")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// RaiseNoFile raises the soft open-files limit to the hard limit (children
// inherit it) and returns the new soft limit.
func RaiseNoFile() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, err
		}
	}
	return r.Cur, nil
}

// Syscalls returns how many read-like and write-like system calls a
// process (all its threads, live and exited) has made: syscr + syscw in
// /proc/<pid>/io. Other system calls (futex, epoll_pwait) are not counted.
func Syscalls(pid int) (int64, error) {
	b, err := os.ReadFile(procPath(pid, "io"))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok || (k != "syscr" && k != "syscw") {
			continue
		}
		c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad %s in /proc/%d/io: %w", k, pid, err)
		}
		n += c
	}
	return n, nil
}

// BrokerPIDs returns the pids of the processes named beam.smp (RabbitMQ's
// Erlang VM on this machine), so the broker's CPU is measured rather than
// inferred. None found is not an error: the broker may be elsewhere.
func BrokerPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(procPath(pid, "comm")); err == nil && strings.TrimSpace(string(comm)) == "beam.smp" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procPath is /proc/<pid>/<file>; pid 0 is this process.
func procPath(pid int, file string) string {
	if pid == 0 {
		return "/proc/self/" + file
	}
	return fmt.Sprintf("/proc/%d/%s", pid, file)
}

// MachineCPU reads the first line of /proc/stat: busy and total jiffies
// over all CPUs since boot.
func MachineCPU() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// CPUMeter measures CPU use between Start and Stop: the whole machine's
// busy fraction and the CPU time of chosen processes.
type CPUMeter struct {
	busy0, total0 int64
	wall0         time.Time
	procs0        map[int]time.Duration
	sys0          map[int]int64
}

// StartCPUMeter takes the first reading; pids are the processes to follow
// (0 = this process).
func StartCPUMeter(pids ...int) *CPUMeter {
	m := &CPUMeter{wall0: time.Now(), procs0: map[int]time.Duration{}, sys0: map[int]int64{}}
	m.busy0, m.total0, _ = MachineCPU()
	for _, pid := range pids {
		m.procs0[pid], _ = CPUTime(pid)
		if n, err := Syscalls(pid); err == nil {
			m.sys0[pid] = n
		}
	}
	return m
}

// CPUUse is what a CPUMeter measured.
type CPUUse struct {
	Wall time.Duration
	// MachineBusy is the busy fraction of all CPUs (1 = every core busy).
	MachineBusy float64
	// Procs is each followed process's CPU time as a fraction of one core.
	Procs map[int]float64
	// Syscalls is each followed process's read and write system calls
	// (Syscalls) in the interval, where /proc/<pid>/io was readable.
	Syscalls map[int]int64
}

// Stop takes the second reading.
func (m *CPUMeter) Stop() CPUUse {
	u := CPUUse{Wall: time.Since(m.wall0), Procs: map[int]float64{}, Syscalls: map[int]int64{}}
	busy, total, err := MachineCPU()
	if err == nil && total > m.total0 {
		u.MachineBusy = float64(busy-m.busy0) / float64(total-m.total0)
	}
	for pid, c0 := range m.procs0 {
		if c1, err := CPUTime(pid); err == nil {
			u.Procs[pid] = float64(c1-c0) / float64(u.Wall)
		}
		if s0, ok := m.sys0[pid]; ok {
			if s1, err := Syscalls(pid); err == nil {
				u.Syscalls[pid] = s1 - s0
			}
		}
	}
	return u
}
