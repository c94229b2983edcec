// Keel's driver for CloudSim 3.0.3's PlanetLab runner (this file is Keel's,
// not CloudSim's; it only calls CloudSim's public and protected API).
//
// Why a driver and not PlanetLabRunnerConsole: CloudSim prints its figures
// through org.cloudbus.cloudsim.Log, and with Log enabled the stock runner
// also writes every host update and VM share (about 600 MB of text a day),
// work Keel does not do. Here the run itself goes with Log disabled, exactly
// as PlanetLabRunner does it; afterwards Log is enabled and the stock
// Helper.printResults prints the same summary lines.
//
// Usage: java QuietPlanetLabRun INPUT_FOLDER DAY POLICY SELECTION PARAMETER

import java.io.IOException;
import org.cloudbus.cloudsim.Log;
import org.cloudbus.cloudsim.power.PowerDatacenter;
import org.cloudbus.cloudsim.examples.power.Helper;
import org.cloudbus.cloudsim.examples.power.planetlab.PlanetLabRunner;

public class QuietPlanetLabRun extends PlanetLabRunner {
    private QuietPlanetLabRun(String input, String output, String day, String policy,
            String selection, String parameter) {
        super(false, false, input, output, day, policy, selection, parameter);
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 5) {
            System.err.println("usage: QuietPlanetLabRun INPUT_FOLDER DAY POLICY SELECTION PARAMETER");
            System.exit(2);
        }
        String input = args[0], day = args[1], policy = args[2], selection = args[3], parameter = args[4];
        String output = System.getProperty("java.io.tmpdir") + "/keel-cloudsim-output";
        new QuietPlanetLabRun(input, output, day, policy, selection, parameter);
        // The datacenter object is local to RunnerAbstract.start; every host
        // keeps a reference to it. The last clock is not kept by CloudSim
        // after the run, so "Total simulation time" prints NaN.
        PowerDatacenter datacenter = (PowerDatacenter) hostList.get(0).getDatacenter();
        Log.setDisabled(false);
        String experiment = day + "_" + policy + (selection.isEmpty() ? "" : "_" + selection)
                + (parameter.isEmpty() ? "" : "_" + parameter);
        Helper.printResults(datacenter, vmList, Double.NaN, experiment, false, output);
    }
}
