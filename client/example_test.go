package client_test

import (
	"fmt"

	"github.com/goim/goim/client"
)

// The waits logic's default hint gives a client's first reconnect
// attempts, without jitter (r = 0.5), and the spread of the first one.
func ExampleBackoff_Delay() {
	for n := range 4 {
		fmt.Println(client.DefaultBackoff.Delay(n, 0.5).Round(1e6))
	}
	fmt.Println(client.DefaultBackoff.Delay(0, 0).Round(1e6), "to", client.DefaultBackoff.Delay(0, 1).Round(1e6))
	fmt.Println(client.DefaultBackoff.Delay(100, 0.5))
	// Output:
	// 3s
	// 5.4s
	// 9.72s
	// 17.496s
	// 2.1s to 3.9s
	// 5m0s
}
