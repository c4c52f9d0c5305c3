// Small time-series charts over uPlot (about 50 kB; canvas, no DOM per point).
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

// series: [{label, values, colour}], x: unix seconds; bars draws columns.
export function timeChart(el, { x, series, height = 180, bars = false }) {
  // The plot fits the element's content box (its padding is not drawable).
  const inner = () => {
    const style = getComputedStyle(el);
    return Math.max(280, el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight));
  };
  const width = el.clientWidth ? inner() : 480;
  const options = {
    width,
    height,
    series: [
      {},
      ...series.map((item) => ({
        label: item.label,
        stroke: item.colour || '#0969da',
        fill: bars ? `${item.colour || '#0969da'}55` : undefined,
        width: 2,
        paths: bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined,
        points: { show: !bars },
      })),
    ],
    axes: [{}, { size: 50 }],
  };
  const plot = new uPlot(options, [x, ...series.map((item) => item.values)], el);
  const resize = new ResizeObserver(() => plot.setSize({ width: inner(), height }));
  resize.observe(el);
  return {
    plot,
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
    update(nextX, values) {
      plot.setData([nextX, ...values]);
    },
  };
}
