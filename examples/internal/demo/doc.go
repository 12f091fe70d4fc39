// Package demo holds the parts the example programs share that a user would
// not copy: asking a provider's status lookup whether a payment executed, and
// printing each attempt of a call. Each example keeps in its main.go what it
// teaches: the Transport built from the provider's preset, the payment
// request, and the switch over how the call ended.
package demo
