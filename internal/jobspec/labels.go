package jobspec

// LabelsMatch reports whether a worker whose labels are workerLabels may
// run a job that asks for jobLabels (the JobRequest's workerLabels): the
// worker carries every label the job asks for, with the same value. Labels
// the job does not mention do not matter, so the argument order matters:
// the job's labels first, the worker's second.
func LabelsMatch(jobLabels, workerLabels map[string]string) bool {
	for key, want := range jobLabels {
		if have, ok := workerLabels[key]; !ok || have != want {
			return false
		}
	}
	return true
}
