package bench

import (
	"math"
	"testing"
)

func TestMedianOf(t *testing.T) {
	if m := MedianOf([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("even count: %v", m)
	}
	if m := MedianOf([]float64{3, 1, 2}); m != 2 {
		t.Errorf("odd count: %v", m)
	}
	if m := MedianOf(nil); !math.IsNaN(m) {
		t.Errorf("none: %v", m)
	}
}
