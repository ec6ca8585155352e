package main

import (
	"bytes"
	"strings"
	"testing"
)

// The follower notes a seq gap within one hub, and a move to another hub
// with the output chunks lost across it; contiguous events say nothing.
func TestLogsGapTracker(t *testing.T) {
	chunk := func(n uint64) *uint64 { return &n }
	tests := []struct {
		name   string
		events []jobEvent
		want   []string // substrings of the notes, in order; none: no note
	}{
		{"contiguous", []jobEvent{
			{JobID: "j", Event: "accepted", HubID: "a", Seq: 1},
			{JobID: "j", Event: "log", HubID: "a", Seq: 2, Chunk: chunk(0)},
			{JobID: "j", Event: "log", HubID: "a", Seq: 3, Chunk: chunk(1)},
			{JobID: "j", Event: "finished", HubID: "a", Seq: 4},
		}, nil},
		{"dropped events", []jobEvent{
			{JobID: "j", Event: "accepted", HubID: "a", Seq: 1},
			{JobID: "j", Event: "log", HubID: "a", Seq: 4, Chunk: chunk(2)},
		}, []string{"2 events of job j missing"}},
		{"moved with chunks lost", []jobEvent{
			{JobID: "j", Event: "accepted", HubID: "a", Seq: 1},
			{JobID: "j", Event: "log", HubID: "a", Seq: 2, Chunk: chunk(0)},
			{JobID: "j", Event: "accepted", HubID: "b", Seq: 1},
			{JobID: "j", Event: "log", HubID: "b", Seq: 2, Chunk: chunk(3)},
		}, []string{"moved to hub b", "2 chunks of output of job j missing"}},
		{"moved without loss", []jobEvent{
			{JobID: "j", Event: "log", HubID: "a", Seq: 2, Chunk: chunk(0)},
			{JobID: "j", Event: "accepted", HubID: "b", Seq: 1},
			{JobID: "j", Event: "log", HubID: "b", Seq: 2, Chunk: chunk(1)},
		}, []string{"moved to hub b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g gapTracker
			var out bytes.Buffer
			for _, ev := range tc.events {
				g.note(ev, &out)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if out.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tc.want) {
				t.Fatalf("notes = %q, want %d containing %q", lines, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("note %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}
