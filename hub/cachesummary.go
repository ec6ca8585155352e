package hub

import (
	"slices"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Bounds on a worker's CacheSummary (worker.proto). A summary over
// them is trimmed, not rejected: the worker keeps its session and the hub
// keeps the entries it accepts.
const (
	maxCacheEntries = 64  // build keys, and base images, per summary
	maxBuildKeyLen  = 64  // bytes of one build key
	maxBaseImageLen = 256 // bytes of one base image name
)

// cacheSummary is what the hub keeps of a worker's CacheSummary: bounded,
// distinct entries, in the worker's order.
type cacheSummary struct {
	keys   []string // build keys, newest first
	images []string // base images
	bytes  uint64   // bytes the worker's build cache takes
}

// boundCacheSummary keeps what the hub accepts of cs: of each list, the
// first maxCacheEntries distinct entries that are non-empty UTF-8 within
// their length bound. trimmed reports whether anything was left out.
func boundCacheSummary(cs *blacktreev1.CacheSummary) (s cacheSummary, trimmed bool) {
	var keysTrimmed, imagesTrimmed bool
	s.keys, keysTrimmed = boundEntries(cs.GetBuildKeys(), maxBuildKeyLen)
	s.images, imagesTrimmed = boundEntries(cs.GetBaseImages(), maxBaseImageLen)
	s.bytes = cs.GetSizeBytes()
	return s, keysTrimmed || imagesTrimmed
}

// boundEntries returns the first maxCacheEntries distinct entries of in
// that are non-empty UTF-8 of at most maxLen bytes, and whether any entry
// was left out.
func boundEntries(in []string, maxLen int) (out []string, trimmed bool) {
	if len(in) == 0 {
		return nil, false
	}
	out = make([]string, 0, min(len(in), maxCacheEntries))
	for _, v := range in {
		switch {
		case len(out) == maxCacheEntries, v == "", len(v) > maxLen, !utf8.ValidString(v), slices.Contains(out, v):
			trimmed = true
		default:
			out = append(out, v)
		}
	}
	return out, trimmed
}

// holds reports whether the summary names build key key; a nil summary
// names none.
func (s *cacheSummary) holds(key string) bool {
	return s != nil && key != "" && slices.Contains(s.keys, key)
}

// proto is the summary as the admin API shows it.
func (s *cacheSummary) proto() *blacktreev1.CacheSummary {
	return &blacktreev1.CacheSummary{
		BuildKeys:  slices.Clone(s.keys),
		BaseImages: slices.Clone(s.images),
		SizeBytes:  s.bytes,
	}
}
