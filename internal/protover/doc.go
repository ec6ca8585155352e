// Package protover numbers the worker protocol (WorkerService) so that a
// hub and a worker of different releases can tell whether they understand
// each other (docs/protocol.md#versions).
//
// Version 1 is the protocol as it was before it was numbered; a Register
// without a version (0: a worker from before the field) is version 1, so
// such workers keep working through a rolling upgrade. A release that
// changes what one side must understand of the other raises Current; a
// hub keeps accepting the versions from Oldest to Current.
//
// Features name optional behaviours a side announces (Register.features,
// Registered.features); they never gate the protocol itself, which is what
// the version is for.
package protover
