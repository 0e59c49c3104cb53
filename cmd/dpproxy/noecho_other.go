//go:build !linux

package main

import "os"

// noEcho is a no-op where dpproxy does not know how to turn echo off; pipe
// the password into `dpproxy passwd` there.
func noEcho(*os.File) (restore func()) { return func() {} }
