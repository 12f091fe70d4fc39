// Package childproc ties the processes the tests and examples start (Redis
// servers, replicas) to the life of the process that starts them.
package childproc
