package ledger

import (
	"os"
	"syscall"
)

// syncData makes f's data durable: fdatasync, which skips the inode's
// timestamps (the journal's size still goes with it).
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
