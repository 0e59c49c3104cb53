package main

import (
	"flag"
	"fmt"
)

// describe makes fs's --help print a synopsis and a description before the
// flags, on stdout (main exits 0 after --help).
func describe(fs *flag.FlagSet, synopsis, text string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\n%s\n\nFlags:\n", synopsis, text)
		fs.PrintDefaults()
	}
}
