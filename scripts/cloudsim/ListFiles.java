// Keel's helper: prints File.listFiles() of a folder, one name a line, the
// order CloudSim 3.0.3's PlanetLabHelper gives VMs their trace files.
import java.io.File;

public class ListFiles {
    public static void main(String[] args) {
        File[] files = new File(args[0]).listFiles();
        if (files == null) {
            System.err.println("cannot list " + args[0]);
            System.exit(1);
        }
        for (File f : files) {
            System.out.println(f.getName());
        }
    }
}
