package executor

import (
	"context"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// StageFunc is told each stage a running job enters. The agent passes one
// in the context of Run and journals the stage, so that a restarted
// worker names the stage a job was interrupted in
// (docs/design/worker-journal.md). It must return quickly.
type StageFunc func(blacktreev1.JobStage)

type stageKey struct{}

// WithStageFunc returns ctx carrying f for EnterStage.
func WithStageFunc(ctx context.Context, f StageFunc) context.Context {
	return context.WithValue(ctx, stageKey{}, f)
}

// EnterStage tells the StageFunc in ctx, if any, that the job enters
// stage. Executors call it as a job moves on (clone, build, push).
func EnterStage(ctx context.Context, stage blacktreev1.JobStage) {
	if f, ok := ctx.Value(stageKey{}).(StageFunc); ok && f != nil {
		f(stage)
	}
}

// StageWord is a stage's short name in messages: "validate", "clone",
// "build", "push", or "job" for any other.
func StageWord(s blacktreev1.JobStage) string {
	switch s {
	case blacktreev1.JobStage_JOB_STAGE_VALIDATE:
		return "validate"
	case blacktreev1.JobStage_JOB_STAGE_CLONE:
		return "clone"
	case blacktreev1.JobStage_JOB_STAGE_BUILD:
		return "build"
	case blacktreev1.JobStage_JOB_STAGE_PUSH:
		return "push"
	default:
		return "job"
	}
}
