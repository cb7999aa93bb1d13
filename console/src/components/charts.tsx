import {
  BarElement,
  CategoryScale,
  Chart as ChartJS,
  Filler,
  Legend,
  LinearScale,
  LineElement,
  PointElement,
  Tooltip,
  type ChartOptions,
} from "chart.js";
import { useMemo } from "react";
import { Bar, Line } from "react-chartjs-2";

ChartJS.register(CategoryScale, LinearScale, PointElement, LineElement, BarElement, Tooltip, Legend, Filler);

export interface Series {
  label: string;
  points: { x: number; y: number | null | undefined }[];
  color: string;
}

/** Loss curves (or any series over steps, each in step order; the monitor thins long ones,
 * see curve.ts). `data-points` says how many points the curves hold (the tests read it). */
export function LossChart({ series, label, count }: { series: Series[]; label: string; count?: number }) {
  // The same series draw the same data: a re-render of the page leaves the chart alone.
  const data = useMemo(
    () => ({
      datasets: series.map((s) => ({
        label: s.label,
        data: s.points.filter((p) => p.y !== null && p.y !== undefined) as { x: number; y: number }[],
        borderColor: s.color,
        backgroundColor: s.color,
        pointRadius: 0,
        borderWidth: 2,
        tension: 0.2,
      })),
    }),
    [series],
  );
  return (
    <figure className="chart" aria-label={label} data-points={count ?? series[0]?.points.length ?? 0}>
      <Line data={data} options={LOSS_OPTIONS} />
    </figure>
  );
}

const LOSS_OPTIONS: ChartOptions<"line"> = {
  animation: false,
  responsive: true,
  maintainAspectRatio: false,
  parsing: false,
  normalized: true,
  spanGaps: true,
  scales: {
    x: { type: "linear", title: { display: true, text: "step" } },
    y: { title: { display: true, text: "loss" } },
  },
  plugins: { legend: { position: "bottom" } },
};

/** Stacked bars per category (costs by period, token length buckets). */
export function BarChart({
  labels,
  stacks,
  label,
}: {
  labels: string[];
  stacks: { label: string; values: number[]; color: string }[];
  label: string;
}) {
  return (
    <figure className="chart" aria-label={label}>
      <Bar
        data={{
          labels,
          datasets: stacks.map((s) => ({ label: s.label, data: s.values, backgroundColor: s.color })),
        }}
        options={{
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
          plugins: { legend: { position: "bottom" } },
        }}
      />
    </figure>
  );
}
