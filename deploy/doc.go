// Package deploy holds Blacktree's ready-made deployment files and the
// tests that keep them true to the binaries; it has no code of its own.
// deploy/README.md says how to use each.
//
// Files:
//   - docker/: the Dockerfiles of the images scripts/build-images (make
//     images) builds FROM scratch; e2e/images_test.go runs the demo's job
//     in containers made from them.
//   - kubernetes/: the hub as a Deployment with a Service and a
//     PodDisruptionBudget, the workers as a DaemonSet, the Secrets.
//     kubernetes_test.go decodes them strictly into k8s.io/api types and
//     checks ports, probes, flags and Secret references.
//   - systemd/: blacktree-hub.service and blacktree-worker@.service.
//     systemd_test.go runs systemd-analyze verify on them and checks their
//     flags and state directories.
//   - flags_test.go: every binary's flag set, read from its --help, and
//     the check that a manifest or unit uses only flags that exist;
//     main_test.go builds the binaries once for all tests.
package deploy
